"""Anthropic ingress: POST /v1/messages, JSON or SSE, translated to and from the canonical shape.

`translate` turns a Messages API request into a canonical (OpenAI Chat Completions)
request; `AnthropicReply` turns the canonical answer back into an Anthropic `Message`
or its event stream. Fields the canonical shape cannot carry are refused with a 400
when dropping them would change the answer, and ignored when they are only hints.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import orjson
from litestar import Request, Response, post
from litestar.di import NamedDependency

from orqen_common.canonical import TokenUsage, new_tool_call_id, stop_reason, text_of, unsupported
from orqen_common.context import Principal
from orqen_common.errors import INTERNAL, OrqenError, invalid_request
from orqen_edge.errors import error_body
from orqen_edge.ingress.content_blocks import BlockDelta, BlockEvent, BlockSequencer, BlockStart, tool_input
from orqen_edge.ingress.pipeline import CREDENTIAL_FIELDS, serve_chat
from orqen_edge.runtime import Runtime

BETA_HEADER = "anthropic-beta"
_CANONICAL = "Orqen's canonical format"

# Top-level request fields Orqen translates.
_TRANSLATED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "thinking",
        "stream",
        "cache_control",
        "output_config",
        "mcp_servers",
    }
)
# Fields accepted and ignored: they steer Anthropic's own infrastructure (capacity,
# region, speed, workspace, diagnostics, server-side containers and context editing)
# or, for `container`, only matter to server tools, which are refused anyway. None of
# them changes what the model is asked.
_IGNORED = frozenset(
    {
        "service_tier",
        "container",
        "context_management",
        "diagnostics",
        "inference_geo",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)
_KNOWN_FIELDS = _TRANSLATED | _IGNORED | frozenset(CREDENTIAL_FIELDS)


@post("/v1/messages", summary="Messages (Anthropic SDK)", status_code=200)
async def create_message(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> Response[Any]:
    beta = ",".join(request.headers.getall(BETA_HEADER, []))
    return await serve_chat(request, runtime, principal, "anthropic", partial(translate, beta=beta))


def translate(body: Any, beta: str = "") -> tuple[dict[str, Any], AnthropicReply]:
    """The canonical request for a Messages API body; `beta` is the anthropic-beta header value."""
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    for name in body:
        if name not in _KNOWN_FIELDS:
            raise _invalid(name, "Extra inputs are not permitted")
    _refuse_untranslatable(body)

    chat: dict[str, Any] = {
        "model": _required_str(body, "model"),
        "messages": _system(body.get("system"), "system") + _messages(body.get("messages")),
        "max_tokens": _int(body.get("max_tokens"), "max_tokens"),
        "stream": _optional_bool(body.get("stream"), "stream"),
    }
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = _number(body[name], name)
    if body.get("top_k") is not None:
        chat["top_k"] = _int(body["top_k"], "top_k")
    if stop := _stop_sequences(body.get("stop_sequences")):
        chat["stop"] = stop
    if user := _metadata_user(body.get("metadata")):
        chat["user"] = user
    if thinking := _thinking(body.get("thinking")):
        chat["thinking"] = thinking
    if betas := [value.strip() for value in beta.split(",") if value.strip()]:
        chat["anthropic_beta"] = betas
    chat.update(_tools(body.get("tools"), body.get("tool_choice")))
    if isinstance(body.get("cache_control"), dict):
        _mark_last_block(chat["messages"], body["cache_control"])
    for name in CREDENTIAL_FIELDS:
        if name in body:
            chat[name] = body[name]
    return chat, AnthropicReply()


def _refuse_untranslatable(body: dict[str, Any]) -> None:
    """400 for request fields that change the answer and have no canonical counterpart."""
    if body.get("mcp_servers"):
        raise unsupported("The Anthropic MCP connector ('mcp_servers')", _CANONICAL)
    output_config = body.get("output_config")
    if output_config is not None and not isinstance(output_config, dict):
        raise _invalid("output_config", "Input should be an object")
    # `effort` is a hint about how hard to think; a required output format is not.
    if output_config and output_config.get("format") is not None:
        raise unsupported("Anthropic structured output ('output_config.format')", _CANONICAL)


# ---------------------------------------------------------------------------------------
# Request: messages


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "Field required: a non-empty array of messages")
    canonical: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        path = f"messages.{i}"
        if not isinstance(message, dict):
            raise _invalid(path, "Input should be an object")
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, str | list):
            raise _invalid(f"{path}.content", "Input should be a string or an array of content blocks")
        if role == "user":
            canonical += _user_turn(content, f"{path}.content")
        elif role == "assistant":
            canonical += _assistant_turn(content, f"{path}.content")
        elif role == "system":
            # The SDK allows system turns inside the conversation; canonical messages do too.
            canonical += _system(content, f"{path}.content")
        else:
            raise _invalid(f"{path}.role", "Input should be 'user', 'assistant' or 'system'")
    return canonical


def _system(system: Any, path: str) -> list[dict[str, Any]]:
    """At most one canonical system message: a string, or text parts when blocks set cache_control."""
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise _invalid(path, "Input should be a string or an array of text blocks")
    parts = [_text_part(block, f"{path}.{j}") for j, block in enumerate(system)]
    if not parts:
        return []
    if any("cache_control" in part for part in parts):
        return [{"role": "system", "content": parts}]
    return [{"role": "system", "content": "\n".join(part["text"] for part in parts)}]


def _user_turn(content: str | list[Any], path: str) -> list[dict[str, Any]]:
    """A user turn: its tool results first, as canonical tool messages, then its other parts.

    Anthropic requires tool results to lead the turn; OpenAI requires tool messages to
    follow the assistant's tool calls directly, so they go before the user message.
    """
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not content:
        raise _invalid(path, "A user message needs at least one content block")
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        block_type = _block_type(block, f"{path}.{j}")
        if block_type == "tool_result":
            tool_messages.append(_tool_message(block, f"{path}.{j}"))
        elif block_type == "text":
            parts.append(_text_part(block, f"{path}.{j}"))
        elif block_type == "image":
            parts.append(_image_part(block, f"{path}.{j}"))
        else:
            raise unsupported(f"Anthropic '{block_type}' content blocks", _CANONICAL)
    return tool_messages + ([{"role": "user", "content": parts}] if parts else [])


def _assistant_turn(content: str | list[Any], path: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}]
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        block_type = _block_type(block, f"{path}.{j}")
        if block_type == "text":
            parts.append(_text_part(block, f"{path}.{j}"))
        elif block_type == "tool_use":
            tool_calls.append(_tool_call(block, f"{path}.{j}"))
        elif block_type in ("thinking", "redacted_thinking"):
            # Canonical messages have no place for thinking, and Orqen never returns
            # thinking blocks, so these can only come from a conversation held elsewhere.
            # Their signatures are only valid for the Anthropic model that wrote them.
            continue
        else:
            raise unsupported(f"Anthropic '{block_type}' content blocks", _CANONICAL)
    if not parts and not tool_calls:
        return []  # nothing left once thinking is dropped: no empty assistant turn
    message: dict[str, Any] = {"role": "assistant", "content": parts or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return [message]


def _block_type(block: Any, path: str) -> str:
    if not isinstance(block, dict):
        raise _invalid(path, "Input should be a content block object")
    block_type = block.get("type")
    if not isinstance(block_type, str):
        raise _invalid(f"{path}.type", "Field required")
    return block_type


def _text_part(block: Any, path: str) -> dict[str, Any]:
    """A canonical text part; citations refer to documents Orqen cannot carry, so they go."""
    if _block_type(block, path) != "text":
        raise _invalid(f"{path}.type", "Input should be 'text'")
    part = {"type": "text", "text": _required_str(block, "text", path, may_be_empty=True)}
    return _with_cache_control(part, block)


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise _invalid(f"{path}.source", "Field required")
    source_type = source.get("type")
    if source_type == "base64":
        media_type = _required_str(source, "media_type", f"{path}.source")
        data = _required_str(source, "data", f"{path}.source")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"{path}.source.data", "Input is not valid base64") from None
        url = f"data:{media_type};base64,{data}"
    elif source_type == "url":
        url = _required_str(source, "url", f"{path}.source")
    else:
        raise unsupported(f"An Anthropic image with a {source_type!r} source", _CANONICAL)
    return _with_cache_control({"type": "image_url", "image_url": {"url": url}}, block)


def _tool_message(block: dict[str, Any], path: str) -> dict[str, Any]:
    """A canonical tool message; `is_error` travels as the canonical extension of that name."""
    content = block.get("content", "")
    if isinstance(content, list):
        parts: list[dict[str, Any]] = []
        for k, item in enumerate(content):
            item_type = _block_type(item, f"{path}.content.{k}")
            if item_type == "image":
                raise unsupported("An image inside an Anthropic tool result", _CANONICAL)
            if item_type != "text":
                raise unsupported(f"Anthropic '{item_type}' content blocks", _CANONICAL)
            parts.append(_text_part(item, f"{path}.content.{k}"))
        content = parts or ""
    elif not isinstance(content, str):
        raise _invalid(f"{path}.content", "Input should be a string or an array of content blocks")
    if isinstance(block.get("cache_control"), dict):
        content = _cache_marked(content, block["cache_control"])
    message = {"role": "tool", "tool_call_id": _required_str(block, "tool_use_id", path), "content": content}
    if block.get("is_error") is True:
        message["is_error"] = True
    return message


def _tool_call(block: dict[str, Any], path: str) -> dict[str, Any]:
    arguments = block.get("input", {})
    if not isinstance(arguments, dict):
        raise _invalid(f"{path}.input", "Input should be an object")
    return {
        "id": _required_str(block, "id", path),
        "type": "function",
        "function": {"name": _required_str(block, "name", path), "arguments": orjson.dumps(arguments).decode()},
    }


def _with_cache_control(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _cache_marked(content: Any, cache_control: dict[str, Any]) -> Any:
    """Content with a cache breakpoint on its last part; unchanged when there is no part to mark."""
    if isinstance(content, str) and content:
        return [{"type": "text", "text": content, "cache_control": cache_control}]
    if isinstance(content, list) and content:
        return [*content[:-1], {**content[-1], "cache_control": cache_control}]
    return content


def _mark_last_block(messages: list[dict[str, Any]], cache_control: dict[str, Any]) -> None:
    """Top-level cache_control: Anthropic puts the breakpoint on the last cacheable block.

    A trailing assistant turn of tool calls only has no canonical part to mark; the hint
    is dropped then.
    """
    if messages:
        messages[-1]["content"] = _cache_marked(messages[-1].get("content"), cache_control)


# ---------------------------------------------------------------------------------------
# Request: tools and sampling


def _tools(tools: Any, tool_choice: Any) -> dict[str, Any]:
    """Canonical `tools`, `tool_choice` and `parallel_tool_calls`."""
    if tools is None:
        tools = []
    if not isinstance(tools, list):
        raise _invalid("tools", "Input should be an array")
    out: dict[str, Any] = {}
    if tools:
        out["tools"] = [_tool(tool, f"tools.{i}") for i, tool in enumerate(tools)]
    if tool_choice is None:
        return out
    if not isinstance(tool_choice, dict):
        raise _invalid("tool_choice", "Input should be an object")
    choice_type = tool_choice.get("type")
    if choice_type in ("auto", "none"):
        choice: Any = choice_type
    elif choice_type == "any":
        choice = "required"
    elif choice_type == "tool":
        choice = {"type": "function", "function": {"name": _required_str(tool_choice, "name", "tool_choice")}}
    else:
        raise _invalid("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
    if not tools:
        # Without tools "auto" and "none" mean the same as no tools; forcing a call cannot work.
        if choice_type in ("any", "tool"):
            raise _invalid("tool_choice", f"'{choice_type}' requires 'tools'")
        return out
    out["tool_choice"] = choice
    if tool_choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def _tool(tool: Any, path: str) -> dict[str, Any]:
    """A canonical function tool for a custom tool; Anthropic's server tools are refused.

    `input_examples`, `defer_loading`, `allowed_callers` and `eager_input_streaming`
    are hints for Anthropic's own tool machinery and are dropped.
    """
    if not isinstance(tool, dict):
        raise _invalid(path, "Input should be an object")
    tool_type = tool.get("type")
    if tool_type not in (None, "custom"):
        raise unsupported(f"The Anthropic server tool {tool_type!r}", _CANONICAL)
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise _invalid(f"{path}.input_schema", "Field required: a JSON schema object")
    function: dict[str, Any] = {"name": _required_str(tool, "name", path), "parameters": schema}
    if tool.get("description") is not None:
        function["description"] = _required_str(tool, "description", path, may_be_empty=True)
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    if isinstance(tool.get("x-orqen-examples"), list):
        # Orqen's routing examples, where the canonical tool keeps them; stripped before dispatch.
        function["x-orqen-examples"] = tool["x-orqen-examples"]
    return _with_cache_control({"type": "function", "function": function}, tool)


def _stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _invalid("stop_sequences", "Input should be an array of strings")
    return value


def _metadata_user(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "Input should be an object")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise _invalid("metadata.user_id", "Input should be a string")
    return user


def _thinking(thinking: Any) -> dict[str, Any] | None:
    """The thinking extension; "disabled" is the same as none, so it is not passed on."""
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
        raise _invalid("thinking.type", "Field required")
    return None if thinking["type"] == "disabled" else thinking


def _required_str(obj: dict[str, Any], name: str, path: str = "", *, may_be_empty: bool = False) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not (value or may_be_empty):
        raise _invalid(f"{path}.{name}" if path else name, "Field required: a non-empty string")
    return value


def _int(value: Any, path: str) -> int:
    if value is None:
        raise _invalid(path, "Field required")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _invalid(path, "Input should be a non-negative integer")
    return value


def _number(value: Any, path: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _invalid(path, "Input should be a number")
    return value


def _optional_bool(value: Any, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(path, "Input should be a boolean")
    return value


def _invalid(path: str, problem: str) -> OrqenError:
    """A 400 in the API's own style: the field path, a colon, the problem."""
    return invalid_request(f"{path}: {problem}")


# ---------------------------------------------------------------------------------------
# Reply


class AnthropicReply:
    """Canonical answers as Anthropic `Message` JSON or Messages API server-sent events."""

    stream_media_type = "text/event-stream"

    def body(self, completion: dict[str, Any]) -> bytes:
        choices = completion.get("choices") or [{}]
        message = choices[0].get("message") or {}
        content: list[dict[str, Any]] = []
        if text := text_of(message.get("content")):
            content.append({"type": "text", "text": text})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or new_tool_call_id(),
                    "name": function.get("name") or "",
                    "input": tool_input(function.get("arguments"), function.get("name")),
                }
            )
        reason, stop_sequence = _stop(choices[0].get("finish_reason"), choices[0].get("stop_sequence"))
        return orjson.dumps(
            {
                "id": _message_id(completion.get("id")),
                "type": "message",
                "role": "assistant",
                "model": completion.get("model") or "",
                "content": content,
                "stop_reason": reason,
                "stop_sequence": stop_sequence,
                "usage": _usage(TokenUsage.from_canonical(completion.get("usage"))),
            }
        )

    async def stream(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        """message_start, ping, the content blocks, then message_delta with the final usage, message_stop.

        message_delta waits for the canonical usage chunk that ends the stream: most
        providers report input tokens only there, and Anthropic SDKs take the totals
        from message_delta.
        """
        blocks = BlockSequencer()
        started = False
        finish: str | None = None
        stop_sequence: str | None = None
        usage: dict[str, Any] | None = None
        async for chunk in chunks:
            if not started:
                started = True
                yield _event(_message_start(chunk))
                yield _event({"type": "ping"})
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if choice.get("index", 0) != 0:
                    continue
                if choice.get("finish_reason") and finish is None:
                    finish, stop_sequence = choice["finish_reason"], choice.get("stop_sequence")
                for event in blocks.feed(choice):
                    yield _event(_block_event(event))
        if not started or finish is None:
            raise _bad_gateway("The provider's stream ended before the answer was complete.")
        reason, stop_sequence = _stop(finish, stop_sequence)
        split = TokenUsage.from_canonical(usage)
        yield _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": stop_sequence},
                "usage": {
                    "output_tokens": split.output,
                    "input_tokens": split.input,
                    "cache_read_input_tokens": split.cache_read,
                    "cache_creation_input_tokens": split.cache_write,
                },
            }
        )
        yield _event({"type": "message_stop"})

    def stream_error(self, err: OrqenError) -> bytes:
        return _event(error_body(err, "anthropic"))


def _block_event(event: BlockEvent) -> dict[str, Any]:
    """A content block event as the Messages API streams it."""
    if isinstance(event, BlockStart):
        block: dict[str, Any] = (
            {"type": "text", "text": ""}
            if event.kind == "text"
            else {"type": "tool_use", "id": event.tool_id, "name": event.name, "input": {}}
        )
        return {"type": "content_block_start", "index": event.index, "content_block": block}
    if isinstance(event, BlockDelta):
        delta = (
            {"type": "text_delta", "text": event.data}
            if event.kind == "text"
            else {"type": "input_json_delta", "partial_json": event.data}
        )
        return {"type": "content_block_delta", "index": event.index, "delta": delta}
    return {"type": "content_block_stop", "index": event.index}


def _message_start(chunk: dict[str, Any]) -> dict[str, Any]:
    """message_start from the first chunk; usage is zero unless this chunk already has it."""
    return {
        "type": "message_start",
        "message": {
            "id": _message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(TokenUsage.from_canonical(chunk.get("usage"))),
        },
    }


def _event(event: dict[str, Any]) -> bytes:
    name: str = event["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _message_id(canonical_id: Any) -> str:
    if not isinstance(canonical_id, str) or not canonical_id:
        return "msg_" + secrets.token_hex(12)
    return canonical_id if canonical_id.startswith("msg_") else "msg_" + canonical_id


def _stop(finish: Any, stop_sequence: Any) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for a canonical finish.

    A canonical stop_sequence of "" says a stop sequence ended generation without saying
    which: still stop_reason "stop_sequence", with the sequence unknown (null).
    """
    sequence = stop_sequence if isinstance(stop_sequence, str) else None
    reason = stop_reason(finish if isinstance(finish, str) else None, sequence)
    if reason == "content_filtered":
        reason = "refusal"  # Anthropic's name for a filtered answer
    return reason, (sequence or None) if reason == "stop_sequence" else None


def _usage(usage: TokenUsage) -> dict[str, int]:
    return {
        "input_tokens": usage.input,
        "output_tokens": usage.output,
        "cache_read_input_tokens": usage.cache_read,
        "cache_creation_input_tokens": usage.cache_write,
    }


def _bad_gateway(message: str) -> OrqenError:
    return OrqenError(INTERNAL, message, http_status=502)
