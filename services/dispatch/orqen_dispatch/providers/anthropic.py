"""Anthropic's Messages API: canonical chat in, a Messages request out, and its answer back.

The two shapes (orqen_common.formats.openai and .anthropic) differ in ways that matter
on the wire:
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
from typing import Any, Literal
from urllib.parse import urlencode

import msgspec
from msgspec import UNSET, Struct, UnsetType

from orqen_common.canonical import TokenUsage, finish_reason, parse_data_url, stop_sequences, unsupported
from orqen_common.errors import invalid_request
from orqen_common.formats import anthropic as wire
from orqen_common.formats import openai as canonical
from orqen_common.formats.openai import ChatCompletion, ChatCompletionChunk, ChatRequest, encode, schema_or_empty
from orqen_dispatch.credentials import header_value
from orqen_dispatch.providers import model_lists
from orqen_dispatch.providers.base import (
    Completion,
    Credentials,
    StreamState,
    UpstreamError,
    decode_answer,
    read_body,
    refuse_openai_only_features,
    send,
    sse_events,
)
from orqen_dispatch.upstream_http import UpstreamClient, UpstreamRequest

API_VERSION = "2023-06-01"
# Models per page of GET /v1/models (the API's maximum), and a bound on pages followed.
_MODELS_PAGE = 1000
_MAX_MODEL_PAGES = 20
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


class AnthropicMessages:
    """POST {base_url}/v1/messages with an x-api-key, JSON or SSE back.

    The call's `api_key` credential wins over the operator's, given here.
    """

    def __init__(
        self, name: str, client: UpstreamClient, base_url: str, api_key: str | None, default_max_tokens: int
    ) -> None:
        self.name = name
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._url = self._base_url + "/v1/messages"
        self._api_key = api_key
        self._default_max_tokens = default_max_tokens

    async def list_models(self, credentials: Credentials) -> list[model_lists.ListedModel]:
        """GET /v1/models, page after page (`after_id`) while the API says it has more."""
        headers = {"anthropic-version": API_VERSION, **self._key_header(credentials)}
        listed: list[model_lists.ListedModel] = []
        params: dict[str, str | int] = {"limit": _MODELS_PAGE}
        for _ in range(_MAX_MODEL_PAGES):
            request = UpstreamRequest("GET", f"{self._base_url}/v1/models?{urlencode(params)}", headers)
            body = await read_body(await send(self._client, request, self.name), self.name)
            page = decode_answer(model_lists.anthropic_page_decoder, body, self.name, "model list")
            listed += model_lists.anthropic_models(page)
            if not page.has_more or not page.last_id:
                break
            params["after_id"] = page.last_id
        return listed

    def wire_request(self, chat: ChatRequest, model: str, stream: bool) -> wire.MessagesRequest:
        """The Messages request for a canonical chat; a 400 for what Messages cannot express."""
        return messages_request(chat, model, stream, self._default_max_tokens)

    async def complete(self, chat: ChatRequest, model: str, credentials: Credentials) -> Completion:
        body = self.wire_request(chat, model, stream=False)
        response = await send(self._client, self._request(body, chat, credentials), self.name)
        answer = decode_answer(wire.message_decoder, await read_body(response, self.name), self.name)
        usage = answer.usage.tokens()
        return Completion(body=canonical_completion(answer, model, usage), usage=usage, status=response.status)

    async def stream(
        self, chat: ChatRequest, model: str, credentials: Credentials, state: StreamState
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Yield canonical chunks as the events arrive, ending with the usage chunk."""
        body = self.wire_request(chat, model, stream=True)
        response = await send(self._client, self._request(body, chat, credentials), self.name)
        state.status = response.status
        translator = _StreamTranslator(self.name, model, state)
        try:
            async for event in sse_events(response, self.name):
                decoded = decode_answer(wire.event_decoder, event.data, self.name, "stream event")
                for chunk in translator.translate(decoded):
                    yield chunk
                if translator.finished:
                    return
        finally:
            response.close()
        raise UpstreamError(502, f"{self.name} stream ended early, before message_stop")

    def _request(self, body: wire.MessagesRequest, chat: ChatRequest, credentials: Credentials) -> UpstreamRequest:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        headers.update(self._key_header(credentials))
        if chat.anthropic_beta:
            headers["anthropic-beta"] = ",".join(chat.anthropic_beta)
        return UpstreamRequest("POST", self._url, headers, encode(body))

    def _key_header(self, credentials: Credentials) -> dict[str, str]:
        """x-api-key: the call's key, else the operator's; none when neither is set."""
        api_key = credentials.get("api_key") or self._api_key
        return {"x-api-key": header_value(api_key, self.name)} if api_key else {}


# --- canonical request -> Messages request ---------------------------------------------


def messages_request(chat: ChatRequest, model: str, stream: bool, default_max_tokens: int) -> wire.MessagesRequest:
    """The Messages request body for a canonical chat request.

    Hints Messages has no use for (seed, service_tier, store, metadata, prediction,
    reasoning_effort, stream_options, ...) are left out: the API rejects unknown fields.
    The SDK (1.x on) no longer lists the sampling fields, but the API still honours them
    on the models that sample that way; the caller asked, so they are sent.
    """
    refuse_openai_only_features(chat, WHERE)
    system, messages = _system_and_turns(chat.messages)
    tools = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(chat.tools or ())]
    return wire.MessagesRequest(
        model=model,
        messages=messages,
        max_tokens=chat.max_completion_tokens or chat.max_tokens or default_max_tokens,
        stream=stream,
        system=system or None,
        tools=tools or None,
        # Messages refuses tool_choice without tools; without tools no choice matters.
        tool_choice=_tool_choice(chat.tool_choice, chat.parallel_tool_calls) if tools else None,
        stop_sequences=stop_sequences(chat.stop) or None,
        temperature=chat.temperature,
        top_p=chat.top_p,
        top_k=chat.top_k,
        thinking=_thinking(chat.thinking),
        metadata=wire.Metadata(user_id=chat.user) if chat.user else None,
    )


@dataclass(slots=True)
class _Turn:
    role: Literal["user", "assistant"]
    blocks: list[wire.ContentBlock] = field(default_factory=list)

    def message(self) -> wire.MessageParam:
        """The turn as a Messages message; a user turn's tool_result blocks go ahead of its other content."""
        if self.role == "assistant":
            return wire.AssistantMessage(content=self.blocks)
        results = [b for b in self.blocks if isinstance(b, wire.ToolResultBlock)]
        others = [b for b in self.blocks if not isinstance(b, wire.ToolResultBlock)]
        return wire.UserMessage(content=[*results, *others])


def _system_and_turns(messages: list[canonical.Message]) -> tuple[list[wire.TextBlock], list[wire.MessageParam]]:
    """Top-level system blocks, and the conversation as alternating Messages turns."""
    if not messages:
        raise invalid_request("messages must be a non-empty list.")
    system: list[wire.TextBlock] = []
    turns: list[_Turn] = []
    for position, message in enumerate(messages):
        where = f"messages[{position}]"
        if isinstance(message, canonical.SystemMessage | canonical.DeveloperMessage):
            system.extend(_text_blocks(message.content))
            continue
        if isinstance(message, canonical.UserMessage):
            turn = _Turn("user", [*_user_blocks(message.content, where)])
        elif isinstance(message, canonical.AssistantMessage):
            turn = _Turn("assistant", _assistant_blocks(message, where))
        elif isinstance(message, canonical.ToolMessage):
            turn = _Turn("user", [_tool_result(message, where)])
        else:
            raise invalid_request(f"{where} has an unknown role {_kind(message)!r}.")
        if not turn.blocks:
            if turn.role == "assistant":
                continue  # an empty assistant turn says nothing; Messages rejects it
            raise invalid_request(f"{where} has no content.")
        if turns and turns[-1].role == turn.role:
            turns[-1].blocks.extend(turn.blocks)
        else:
            turns.append(turn)
    return system, [turn.message() for turn in turns]


def _kind(value: Struct) -> str:
    """The tag of a tagged canonical struct: a part's `type`, a message's `role`."""
    return str(value.__struct_config__.tag)


def _parts(content: canonical.Content | None) -> list[canonical.ContentPart]:
    """Canonical content as a list of parts (a string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [canonical.TextPart(text=content)]
    return content


def _text_block(part: canonical.TextPart) -> wire.TextBlock | None:
    """A text block for a text part, keeping its cache breakpoint; None for empty text."""
    if not part.text:
        return None  # Messages rejects empty text blocks
    return wire.TextBlock(text=part.text, cache_control=part.cache_control)


def _text_blocks(content: canonical.Content) -> list[wire.TextBlock]:
    blocks = []
    for part in _parts(content):
        if not isinstance(part, canonical.TextPart):
            raise unsupported(f"A {_kind(part)!r} part in a system message", WHERE)
        if block := _text_block(part):
            blocks.append(block)
    return blocks


def _user_blocks(content: canonical.Content, where: str) -> list[wire.TextBlock | wire.ImageBlock]:
    blocks: list[wire.TextBlock | wire.ImageBlock] = []
    for part in _parts(content):
        if isinstance(part, canonical.TextPart):
            if block := _text_block(part):
                blocks.append(block)
        elif isinstance(part, canonical.ImagePart):
            blocks.append(_image_block(part, where))
        else:
            raise unsupported(f"The content part type {_kind(part)!r}", WHERE)
    return blocks


def _image_block(part: canonical.ImagePart, where: str) -> wire.ImageBlock:
    url = part.image_url.url
    if not url:
        raise invalid_request(f"{where} has an image_url part without a url.")
    source: wire.ImageSource
    data = parse_data_url(url)
    if data is not None:
        media_type, b64 = data
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise unsupported(f"Images of type {media_type}", WHERE)
        source = wire.Base64Source(media_type=media_type, data=b64)
    elif url.startswith(("https://", "http://")):
        source = wire.URLSource(url=url)
    else:
        raise invalid_request(f"{where} has an image URL that is neither http(s) nor a base64 data URL.")
    return wire.ImageBlock(source=source, cache_control=part.cache_control)


def _assistant_blocks(message: canonical.AssistantMessage, where: str) -> list[wire.ContentBlock]:
    """The assistant's text, then its tool calls as tool_use blocks."""
    blocks: list[wire.ContentBlock] = []
    for part in _parts(message.content):
        if isinstance(part, canonical.RefusalPart):
            part = canonical.TextPart(text=part.refusal)
        elif not isinstance(part, canonical.TextPart):
            raise unsupported(f"A {_kind(part)!r} part in an assistant message", WHERE)
        if block := _text_block(part):
            blocks.append(block)
    blocks += [_tool_use(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(message.tool_calls or ())]
    return blocks


def _tool_use(call: canonical.ToolCall, where: str) -> wire.ToolUseBlock:
    name = call.function.name
    if not name or not call.id:
        raise invalid_request(f"{where} needs an id and a function name.")
    # Some providers record a call without arguments as ""; that is the empty object.
    arguments = call.function.arguments if call.function.arguments.strip() else "{}"
    try:
        tool_input = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        tool_input = None
    if not isinstance(tool_input, dict):
        raise invalid_request(f"The arguments of the call to tool {name!r} ({where}) are not a JSON object.")
    return wire.ToolUseBlock(id=call.id, name=name, input=tool_input)


def _tool_result(message: canonical.ToolMessage, where: str) -> wire.ToolResultBlock:
    if not message.tool_call_id:
        raise invalid_request(f"{where} is a tool message without a tool_call_id.")
    content: str | list[wire.ToolResultContent] = (
        message.content if isinstance(message.content, str) else [*_user_blocks(message.content, where)]
    )
    return wire.ToolResultBlock(
        tool_use_id=message.tool_call_id, content=content, is_error=True if message.is_error else None
    )


def _tool(tool: canonical.AnyTool, where: str) -> wire.Tool:
    if not isinstance(tool, canonical.Tool):
        raise unsupported("Custom (free-form) tools", WHERE)
    function = tool.function
    if not function.name:
        raise invalid_request(f"{where} needs a function with a name.")
    return wire.Tool(
        name=function.name,
        description=function.description or None,
        input_schema=schema_or_empty(function.parameters),
        cache_control=tool.cache_control,
    )


def _tool_choice(choice: canonical.ToolChoice | None, parallel_tool_calls: bool | None) -> wire.ToolChoice | None:
    wire_choice: wire.ToolChoice | None
    if choice is None:
        wire_choice = None
    elif choice == "auto":
        wire_choice = wire.ToolChoiceAuto()
    elif choice == "required":
        wire_choice = wire.ToolChoiceAny()
    elif choice == "none":
        wire_choice = wire.ToolChoiceNone()
    elif isinstance(choice, canonical.NamedToolChoice):
        if not choice.function.name:
            raise invalid_request("tool_choice names no function.")
        wire_choice = wire.ToolChoiceTool(name=choice.function.name)
    elif isinstance(choice, Struct):  # OpenAI's allowed_tools or a named custom tool
        raise unsupported(f"tool_choice {choice.__struct_config__.tag!r}", WHERE)
    else:
        raise unsupported(f"tool_choice {choice!r}", WHERE)
    if parallel_tool_calls is False:
        wire_choice = wire_choice or wire.ToolChoiceAuto()
        # No tool use at all is already no parallel tool use.
        if not isinstance(wire_choice, wire.ToolChoiceNone):
            wire_choice.disable_parallel_tool_use = True
    return wire_choice


def _thinking(thinking: dict[str, Any] | None) -> wire.ThinkingConfig | None:
    if thinking is None:
        return None
    try:
        return msgspec.convert(thinking, wire.ThinkingConfig)
    except msgspec.ValidationError as err:
        raise invalid_request(f"thinking is not valid: {err}.") from None


# --- Messages answer -> canonical ------------------------------------------------------


def canonical_completion(message: wire.Message, model: str, usage: TokenUsage) -> ChatCompletion:
    """The canonical chat.completion for a Messages answer (thinking blocks are left out)."""
    texts = [block.text for block in message.content if isinstance(block, wire.TextBlock)]
    tool_calls = [
        canonical.ToolCall(
            id=block.id, function=canonical.FunctionCall(name=block.name, arguments=_compact_json(block.input or {}))
        )
        for block in message.content
        if isinstance(block, wire.ToolUseBlock)
    ]
    answer = canonical.AnswerMessage(content="".join(texts) if texts else None, tool_calls=tool_calls or UNSET)
    choice = canonical.Choice(
        message=answer,
        finish_reason=finish_reason(message.stop_reason),
        stop_sequence=message.stop_sequence or UNSET,
    )
    return ChatCompletion(
        id=message.id,
        created=int(time.time()),
        model=message.model or model,
        choices=[choice],
        usage=usage.canonical(),
    )


def _compact_json(value: dict[str, Any]) -> str:
    return msgspec.json.encode(value).decode()


# --- Messages stream -> canonical chunks -----------------------------------------------


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

    def translate(self, event: wire.StreamEvent | None) -> list[ChatCompletionChunk]:
        """The canonical chunks for one event; None (an event type added later) and ping give none."""
        if isinstance(event, wire.MessageStart):
            return self._message_start(event.message)
        if isinstance(event, wire.ContentBlockStart):
            return self._block_start(event.index, event.content_block)
        if isinstance(event, wire.ContentBlockDelta):
            return self._block_delta(event.index, event.delta)
        if isinstance(event, wire.ContentBlockStop):
            return self._block_stop(event.index)
        if isinstance(event, wire.MessageDelta):
            return self._message_delta(event)
        if isinstance(event, wire.MessageStop):
            self.finished = True
            chunks = [] if self._finish_sent else [self._chunk(canonical.Delta(), finish_reason("end_turn"))]
            return [*chunks, self._usage_chunk()]
        if isinstance(event, wire.Error):
            raise self._error(event.error)
        return []

    def _message_start(self, message: wire.Message) -> list[ChatCompletionChunk]:
        self._id = message.id
        self._model = message.model or self._model
        self._set_usage(message.usage.tokens())
        return [self._chunk(canonical.Delta(role="assistant", content=""))]

    def _block_start(self, index: int, block: wire.ResponseBlock) -> list[ChatCompletionChunk]:
        if isinstance(block, wire.TextBlock) and block.text:
            return [self._chunk(canonical.Delta(content=block.text))]
        if isinstance(block, wire.ToolUseBlock):
            tool_index = len(self._tool_index)
            self._tool_index[index] = tool_index
            self._tool_has_arguments[index] = False
            call = canonical.ToolCallDelta(
                index=tool_index,
                id=block.id,
                type="function",
                function=canonical.FunctionCallDelta(name=block.name, arguments=""),
            )
            return [self._chunk(canonical.Delta(tool_calls=[call]))]
        return []

    def _block_delta(self, index: int, delta: wire.BlockDelta) -> list[ChatCompletionChunk]:
        if isinstance(delta, wire.TextDelta) and delta.text:
            return [self._chunk(canonical.Delta(content=delta.text))]
        if isinstance(delta, wire.InputJSONDelta) and delta.partial_json and index in self._tool_index:
            self._tool_has_arguments[index] = True
            return [self._arguments_chunk(index, delta.partial_json)]
        return []  # thinking and signature deltas have no canonical place

    def _block_stop(self, index: int) -> list[ChatCompletionChunk]:
        # A call without input streams no JSON at all; canonical arguments are then "{}".
        if index in self._tool_index and not self._tool_has_arguments[index]:
            self._tool_has_arguments[index] = True
            return [self._arguments_chunk(index, "{}")]
        return []

    def _message_delta(self, event: wire.MessageDelta) -> list[ChatCompletionChunk]:
        # output_tokens is cumulative; input and cache counts, when present, are the final ones.
        self._set_usage(event.usage.tokens(self._usage))
        self._finish_sent = True
        finish = finish_reason(event.delta.stop_reason)
        return [self._chunk(canonical.Delta(), finish, event.delta.stop_sequence or UNSET)]

    def _set_usage(self, usage: TokenUsage) -> None:
        self._usage = usage
        self._state.usage = usage

    def _error(self, error: wire.ErrorDetail) -> UpstreamError:
        status = _STATUS_BY_ERROR_TYPE.get(error.type, 502)
        self._state.status = status
        message = error.message or error.type or "unknown error"
        return UpstreamError(status, f"{self._provider} stream failed: {message}")

    def _arguments_chunk(self, index: int, arguments: str) -> ChatCompletionChunk:
        call = canonical.ToolCallDelta(
            index=self._tool_index[index], function=canonical.FunctionCallDelta(arguments=arguments)
        )
        return self._chunk(canonical.Delta(tool_calls=[call]))

    def _chunk(
        self, delta: canonical.Delta, finish: str | None = None, stop_sequence: str | UnsetType = UNSET
    ) -> ChatCompletionChunk:
        choice = canonical.ChunkChoice(delta=delta, finish_reason=finish, stop_sequence=stop_sequence)
        return ChatCompletionChunk(id=self._id, created=self._created, model=self._model, choices=[choice])

    def _usage_chunk(self) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id, created=self._created, model=self._model, choices=[], usage=self._usage.canonical()
        )
