"""Anthropic's Messages API: canonical chat in, a Messages request out, and its answer back.

The two shapes differ in ways that matter on the wire:
- system text is a top-level field, not a message;
- tool results are `tool_result` blocks inside a user turn, which must come right after
  the assistant turn that called the tools, ahead of any other content of that turn;
- consecutive turns of the same role are one turn;
- input usage excludes cache reads and writes, which canonical usage includes.

What Messages cannot express and would change the answer is refused with a 400; what is
only a hint is dropped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from orqen_common.canonical import TokenUsage, finish_reason, parse_data_url, unsupported
from orqen_common.errors import invalid_request
from orqen_dispatch.credentials import header_value
from orqen_dispatch.providers.base import (
    Completion,
    Credentials,
    StreamState,
    UpstreamError,
    UpstreamUsage,
    read_json,
    refuse_openai_only_features,
    send,
    sse_events,
)

API_VERSION = "2023-06-01"
WHERE = "the Anthropic Messages API"

# Media types the API accepts in a base64 image source.
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# HTTP status of each error type an `error` stream event may carry.
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_TOOL_CHOICE_BY_MODE = {"auto": "auto", "required": "any", "none": "none"}


class AnthropicMessages:
    """POST {base_url}/v1/messages with an x-api-key, JSON or SSE back.

    The call's `api_key` credential wins over the operator's, given here.
    """

    def __init__(
        self, name: str, client: httpx.AsyncClient, base_url: str, api_key: str | None, default_max_tokens: int
    ) -> None:
        self.name = name
        self._client = client
        self._url = base_url.rstrip("/") + "/v1/messages"
        self._api_key = api_key
        self._default_max_tokens = default_max_tokens

    def wire_request(self, chat: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
        """The Messages request for a canonical chat; a 400 for what Messages cannot express."""
        return messages_request(chat, model, stream, self._default_max_tokens)

    async def complete(self, chat: dict[str, Any], model: str, credentials: Credentials) -> Completion:
        body = self.wire_request(chat, model, stream=False)
        response = await send(self._client, self._request(body, chat, credentials), self.name)
        answer = await read_json(response, self.name)
        usage = _token_usage(answer.get("usage"))
        return Completion(
            body=canonical_completion(answer, model), usage=_upstream_usage(usage), status=response.status_code
        )

    async def stream(
        self, chat: dict[str, Any], model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield canonical chunks as the events arrive, ending with the usage chunk."""
        body = self.wire_request(chat, model, stream=True)
        response = await send(self._client, self._request(body, chat, credentials), self.name)
        state.status = response.status_code
        translator = _StreamTranslator(self.name, model, state)
        try:
            async for event in sse_events(response, self.name):
                for chunk in translator.translate(_event_payload(event.data, self.name)):
                    yield chunk
                if translator.finished:
                    return
        finally:
            await response.aclose()
        raise UpstreamError(502, f"{self.name} stream ended early, before message_stop")

    def _request(self, body: dict[str, Any], chat: dict[str, Any], credentials: Credentials) -> httpx.Request:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        api_key = credentials.get("api_key") or self._api_key
        if api_key:
            headers["x-api-key"] = header_value(api_key, self.name)
        beta = _anthropic_beta(chat.get("anthropic_beta"))
        if beta:
            headers["anthropic-beta"] = beta
        return self._client.build_request("POST", self._url, content=orjson.dumps(body), headers=headers)


# --- canonical request -> Messages request ---------------------------------------------


def messages_request(chat: dict[str, Any], model: str, stream: bool, default_max_tokens: int) -> dict[str, Any]:
    """The Messages request body for a canonical chat request.

    Hints Messages has no use for (seed, service_tier, store, metadata, prediction,
    reasoning_effort, stream_options, ...) are left out: the API rejects unknown fields.
    """
    refuse_openai_only_features(chat, WHERE)
    system, messages = _system_and_turns(chat.get("messages"))
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": chat.get("max_completion_tokens") or chat.get("max_tokens") or default_max_tokens,
        "stream": stream,
    }
    if system:
        body["system"] = system
    tools = _tools(chat.get("tools"))
    if tools:
        body["tools"] = tools
        # Messages refuses tool_choice without tools; without tools no choice matters.
        tool_choice = _tool_choice(chat.get("tool_choice"), chat.get("parallel_tool_calls"))
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    stop_sequences = _stop_sequences(chat.get("stop"))
    if stop_sequences:
        body["stop_sequences"] = stop_sequences
    # The SDK (1.x on) no longer lists the sampling fields, but the API still honours
    # them on the models that sample that way; the caller asked, so they are sent.
    for field_name in ("temperature", "top_p", "top_k", "thinking"):
        if chat.get(field_name) is not None:
            body[field_name] = chat[field_name]
    if chat.get("user"):
        body["metadata"] = {"user_id": chat["user"]}
    return body


@dataclass(slots=True)
class _Turn:
    role: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def _system_and_turns(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Top-level system blocks, and the conversation as alternating Messages turns."""
    if not isinstance(messages, list) or not messages:
        raise invalid_request("messages must be a non-empty list.")
    system: list[dict[str, Any]] = []
    turns: list[_Turn] = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_request(f"messages[{position}] must be an object.")
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"messages[{position}]"))
            continue
        if role == "user":
            turn = _Turn("user", _user_blocks(message.get("content"), f"messages[{position}]"))
        elif role == "assistant":
            turn = _Turn("assistant", _assistant_blocks(message, f"messages[{position}]"))
        elif role == "tool":
            turn = _Turn("user", [_tool_result(message, f"messages[{position}]")])
        else:
            raise invalid_request(f"messages[{position}] has an unknown role {role!r}.")
        if not turn.blocks:
            if role == "assistant":
                continue  # an empty assistant turn says nothing; Messages rejects it
            raise invalid_request(f"messages[{position}] has no content.")
        if turns and turns[-1].role == turn.role:
            turns[-1].blocks.extend(turn.blocks)
        else:
            turns.append(turn)
    return system, [{"role": t.role, "content": _tool_results_first(t.blocks)} for t in turns]


def _tool_results_first(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages wants a user turn's tool_result blocks ahead of its other content."""
    results = [b for b in blocks if b["type"] == "tool_result"]
    if not results:
        return blocks
    return results + [b for b in blocks if b["type"] != "tool_result"]


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    """Canonical content as a list of parts (a string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise invalid_request(f"{where}.content must be a string or a list of content parts.")


def _text_block(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    """A text block for a text part, keeping its cache breakpoint; None for empty text."""
    text = part.get("text")
    if not isinstance(text, str):
        raise invalid_request(f"{where} has a text part without text.")
    if not text:
        return None  # Messages rejects empty text blocks
    block: dict[str, Any] = {"type": "text", "text": text}
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    blocks = []
    for part in _parts(content, where):
        if part.get("type") != "text":
            raise unsupported(f"A {part.get('type')!r} part in a system message", WHERE)
        block = _text_block(part, where)
        if block is not None:
            blocks.append(block)
    return blocks


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    blocks = []
    for part in _parts(content, where):
        kind = part.get("type")
        if kind == "text":
            block = _text_block(part, where)
        elif kind == "image_url":
            block = _image_block(part, where)
        else:
            raise unsupported(f"The content part type {kind!r}", WHERE)
        if block is not None:
            blocks.append(block)
    return blocks


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else None
    if not isinstance(url, str) or not url:
        raise invalid_request(f"{where} has an image_url part without a url.")
    source: dict[str, Any]
    data = parse_data_url(url)
    if data is not None:
        media_type, b64 = data
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise unsupported(f"Images of type {media_type}", WHERE)
        source = {"type": "base64", "media_type": media_type, "data": b64}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise invalid_request(f"{where} has an image URL that is neither http(s) nor a base64 data URL.")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control") is not None:
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The assistant's text, then its tool calls as tool_use blocks."""
    blocks = []
    for part in _parts(message.get("content"), where):
        kind = part.get("type")
        if kind == "refusal":
            part = {"type": "text", "text": part.get("refusal")}
        elif kind != "text":
            raise unsupported(f"A {kind!r} part in an assistant message", WHERE)
        block = _text_block(part, where)
        if block is not None:
            blocks.append(block)
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise invalid_request(f"{where}.tool_calls must be a list.")
    blocks.extend(_tool_use(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(tool_calls))
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        kind = call.get("type") if isinstance(call, dict) else call
        raise unsupported(f"Tool calls of type {kind!r}", WHERE)
    function = call.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    call_id = call.get("id")
    if not isinstance(name, str) or not name or not isinstance(call_id, str) or not call_id:
        raise invalid_request(f"{where} needs an id and a function name.")
    arguments = function.get("arguments") if isinstance(function, dict) else None
    # Some providers record a call without arguments as ""; that is the empty object.
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        arguments = "{}"
    try:
        tool_input = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        tool_input = None
    if not isinstance(tool_input, dict):
        raise invalid_request(f"The arguments of the call to tool {name!r} ({where}) are not a JSON object.")
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid_request(f"{where} is a tool message without a tool_call_id.")
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    result["content"] = content if isinstance(content, str) else _user_blocks(content, where)
    if message.get("is_error") is True:
        result["is_error"] = True
    return result


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid_request("tools must be a list.")
    return [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise unsupported(f"Tools of type {kind!r}", WHERE)
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise invalid_request(f"{where} needs a function with a name.")
    schema = function.get("parameters") or _empty_input_schema()
    wire: dict[str, Any] = {"name": function["name"], "input_schema": schema}
    if function.get("description"):
        wire["description"] = function["description"]
    if tool.get("cache_control") is not None:
        wire["cache_control"] = tool["cache_control"]
    return wire


def _empty_input_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


def _tool_choice(choice: Any, parallel_tool_calls: Any) -> dict[str, Any] | None:
    wire: dict[str, Any] | None
    if choice is None:
        wire = None
    elif isinstance(choice, str) and choice in _TOOL_CHOICE_BY_MODE:
        wire = {"type": _TOOL_CHOICE_BY_MODE[choice]}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise invalid_request("tool_choice names no function.")
        wire = {"type": "tool", "name": name}
    else:
        kind = choice.get("type") if isinstance(choice, dict) else choice
        raise unsupported(f"tool_choice {kind!r}", WHERE)
    if parallel_tool_calls is False:
        wire = wire or {"type": "auto"}
        if wire["type"] != "none":  # no tool use at all is already no parallel tool use
            wire["disable_parallel_tool_use"] = True
    return wire


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise invalid_request("stop must be a string or a list of strings.")


def _anthropic_beta(beta: Any) -> str:
    if beta is None:
        return ""
    if isinstance(beta, str):
        return beta
    if isinstance(beta, list) and all(isinstance(b, str) for b in beta):
        return ",".join(beta)
    raise invalid_request("anthropic_beta must be a list of strings.")


# --- Messages answer -> canonical ------------------------------------------------------


def canonical_completion(message: dict[str, Any], model: str) -> dict[str, Any]:
    """The canonical chat.completion for a Messages answer (thinking blocks are left out)."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": _compact_json(block.get("input") or {})},
                }
            )
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    choice: dict[str, Any] = {"index": 0, "message": reply, "finish_reason": finish_reason(message.get("stop_reason"))}
    if message.get("stop_sequence"):
        choice["stop_sequence"] = message["stop_sequence"]
    return {
        "id": message.get("id") or "",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or model,
        "choices": [choice],
        "usage": _token_usage(message.get("usage")).canonical(),
    }


def _compact_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _count(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _token_usage(usage: Any, base: TokenUsage | None = None) -> TokenUsage:
    """Messages usage in the split form; counts `usage` lacks keep their `base` value."""
    base = base or TokenUsage()
    usage = usage if isinstance(usage, dict) else {}

    def pick(key: str, current: int) -> int:
        return _count(usage[key]) if usage.get(key) is not None else current

    return TokenUsage(
        input=pick("input_tokens", base.input),
        output=pick("output_tokens", base.output),
        cache_read=pick("cache_read_input_tokens", base.cache_read),
        cache_write=pick("cache_creation_input_tokens", base.cache_write),
    )


def _upstream_usage(usage: TokenUsage) -> UpstreamUsage:
    return UpstreamUsage(
        input_tokens=usage.input + usage.cache_read + usage.cache_write,
        output_tokens=usage.output,
        cached_input_tokens=usage.cache_read,
        cache_write_input_tokens=usage.cache_write,
    )


# --- Messages stream -> canonical chunks -----------------------------------------------


def _event_payload(data: str, provider: str) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise UpstreamError(502, f"{provider} sent a stream event that is not JSON") from err
    if not isinstance(payload, dict):
        raise UpstreamError(502, f"{provider} sent a stream event that is not an object")
    return payload


class _StreamTranslator:
    """Turns Messages stream events into canonical chunks, one event at a time."""

    def __init__(self, provider: str, model: str, state: StreamState) -> None:
        self._provider = provider
        self._state = state
        self._id = ""
        self._model = model
        self._created = int(time.time())
        self._usage = TokenUsage()
        # Content block index -> canonical tool call index, and whether it got arguments yet.
        self._tool_index: dict[int, int] = {}
        self._tool_has_arguments: dict[int, bool] = {}
        self._finish_sent = False
        self.finished = False

    def translate(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            return self._message_start(event.get("message"))
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta"))
        if kind == "content_block_stop":
            return self._block_stop(event.get("index"))
        if kind == "message_delta":
            return self._message_delta(event.get("delta"), event.get("usage"))
        if kind == "message_stop":
            self.finished = True
            chunks = [] if self._finish_sent else [self._chunk({}, finish_reason("end_turn"))]
            return [*chunks, self._usage_chunk()]
        if kind == "error":
            raise self._error(event.get("error"))
        return []  # ping, and event types added after this was written

    def _message_start(self, message: Any) -> list[dict[str, Any]]:
        message = message if isinstance(message, dict) else {}
        self._id = str(message.get("id") or "")
        self._model = str(message.get("model") or self._model)
        self._set_usage(_token_usage(message.get("usage")))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: Any, block: Any) -> list[dict[str, Any]]:
        block = block if isinstance(block, dict) else {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") == "tool_use" and isinstance(index, int):
            tool_index = len(self._tool_index)
            self._tool_index[index] = tool_index
            self._tool_has_arguments[index] = False
            call = {
                "index": tool_index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _block_delta(self, index: Any, delta: Any) -> list[dict[str, Any]]:
        delta = delta if isinstance(delta, dict) else {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if delta.get("type") == "input_json_delta" and delta.get("partial_json") and index in self._tool_index:
            self._tool_has_arguments[index] = True
            return [self._arguments_chunk(index, delta["partial_json"])]
        return []  # thinking, signature and citation deltas have no canonical place

    def _block_stop(self, index: Any) -> list[dict[str, Any]]:
        # A call without input streams no JSON at all; canonical arguments are then "{}".
        if index in self._tool_index and not self._tool_has_arguments[index]:
            self._tool_has_arguments[index] = True
            return [self._arguments_chunk(index, "{}")]
        return []

    def _message_delta(self, delta: Any, usage: Any) -> list[dict[str, Any]]:
        delta = delta if isinstance(delta, dict) else {}
        # output_tokens is cumulative; input and cache counts, when present, are the final ones.
        self._set_usage(_token_usage(usage, self._usage))
        extra = {"stop_sequence": delta["stop_sequence"]} if delta.get("stop_sequence") else {}
        self._finish_sent = True
        return [self._chunk({}, finish_reason(delta.get("stop_reason")), **extra)]

    def _set_usage(self, usage: TokenUsage) -> None:
        self._usage = usage
        self._state.usage = _upstream_usage(usage)

    def _error(self, error: Any) -> UpstreamError:
        error = error if isinstance(error, dict) else {}
        status = _STATUS_BY_ERROR_TYPE.get(str(error.get("type")), 502)
        self._state.status = status
        message = str(error.get("message") or error.get("type") or "unknown error")
        return UpstreamError(status, f"{self._provider} stream failed: {message}")

    def _arguments_chunk(self, index: int, arguments: str) -> dict[str, Any]:
        call = {"index": self._tool_index[index], "function": {"arguments": arguments}}
        return self._chunk({"tool_calls": [call]})

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            **self._envelope(),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, **extra}],
        }

    def _usage_chunk(self) -> dict[str, Any]:
        return {**self._envelope(), "choices": [], "usage": self._usage.canonical()}

    def _envelope(self) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self._model}
