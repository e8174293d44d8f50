"""Anthropic ingress: POST /v1/messages, JSON or SSE, translated to and from the canonical shape.

`translate` decodes a Messages API request (orqen_common.formats.anthropic) and turns it
into a canonical (OpenAI Chat Completions) request; `AnthropicReply` turns the canonical
answer back into an Anthropic `Message` or its event stream. Fields the canonical shape
cannot carry are refused with a 400 when dropping them would change the answer, and
ignored when they are only hints.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import msgspec
from litestar import Request, Response, post
from msgspec import UNSET

from orqen_common.canonical import TokenUsage, data_url, new_tool_call_id, stop_reason, text_of, unsupported
from orqen_common.errors import INTERNAL, OrqenError, invalid_request
from orqen_common.formats import anthropic as wire
from orqen_common.formats import openai as canonical
from orqen_common.formats.openai import (
    CacheControl,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    checked_object,
    decode,
    encode,
)
from orqen_edge.auth import chat_caller
from orqen_edge.errors import error_body
from orqen_edge.ingress.content_blocks import BlockDelta, BlockEvent, BlockSequencer, BlockStart, tool_input
from orqen_edge.ingress.pipeline import serve_chat
from orqen_edge.openapi import API_KEY, PROVIDER, errors, json_body

BETA_HEADER = "anthropic-beta"
_CANONICAL = "Orqen's canonical format"
_BODY = "The request body"

_request_decoder = msgspec.json.Decoder(wire.MessagesRequest)


@post(
    "/v1/messages",
    summary="Messages (Anthropic SDK)",
    status_code=200,
    security=API_KEY,
    operation_class=json_body(wire.MessagesRequest),
    responses=errors(*PROVIDER, ingress="anthropic"),
)
async def create_message(request: Request[Any, Any, Any]) -> Response[Any]:
    runtime, principal = await chat_caller(request)
    beta = ",".join(request.headers.getall(BETA_HEADER, []))
    return await serve_chat(request, runtime, principal, "anthropic", partial(translate, beta=beta))


def translate(body: bytes, beta: str = "") -> tuple[ChatRequest, AnthropicReply]:
    """The canonical request for a Messages API body; `beta` is the anthropic-beta header value."""
    request = decode(_request_decoder, body, _BODY)
    _refuse_untranslatable(request)
    messages = _system(request.system) + _messages(request.messages)
    if request.cache_control is not None:
        _mark_last_block(messages, request.cache_control)
    tools, tool_choice, parallel_tool_calls = _tools(request.tools, request.tool_choice)
    chat = ChatRequest(
        model=request.model,
        messages=messages,
        max_tokens=request.max_tokens,
        stream=bool(request.stream),
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        stop=request.stop_sequences or None,
        user=(request.metadata.user_id or None) if request.metadata is not None else None,
        thinking=_thinking(request.thinking),
        anthropic_beta=[value.strip() for value in beta.split(",") if value.strip()] or None,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        aws_access_key_id=request.aws_access_key_id,
        aws_secret_access_key=request.aws_secret_access_key,
        aws_region_name=request.aws_region_name,
        aws_session_token=request.aws_session_token,
        aws_bearer_token_bedrock=request.aws_bearer_token_bedrock,
    )
    return chat, AnthropicReply()


def _refuse_untranslatable(request: wire.MessagesRequest) -> None:
    """400 for request fields that change the answer and have no canonical counterpart."""
    if request.mcp_servers:
        raise unsupported("The Anthropic MCP connector ('mcp_servers')", _CANONICAL)
    # `effort` is a hint about how hard to think; a required output format is not.
    if request.output_config is not None and request.output_config.format is not None:
        raise unsupported("Anthropic structured output ('output_config.format')", _CANONICAL)


def _invalid(problem: str, path: str) -> OrqenError:
    """A 400 for what the types cannot check, worded like the decoder's own (`path` from `$.`)."""
    return invalid_request(f"{_BODY} is not valid: {problem} - at `$.{path}`.")


# ---------------------------------------------------------------------------------------
# Request: messages


def _messages(messages: list[wire.MessageParam]) -> list[canonical.Message]:
    out: list[canonical.Message] = []
    for i, message in enumerate(messages):
        path = f"messages[{i}].content"
        if isinstance(message, wire.UserMessage):
            out += _user_turn(message.content, path)
        elif isinstance(message, wire.AssistantMessage):
            out += _assistant_turn(message.content)
        else:
            # The SDK allows system turns inside the conversation; canonical messages do too.
            out += _system(message.content)
    return out


def _system(system: str | list[wire.TextBlock] | None) -> list[canonical.Message]:
    """At most one canonical system message: a string, or text parts when blocks set cache_control."""
    if not system:
        return []
    if isinstance(system, str):
        return [canonical.SystemMessage(content=system)]
    if any(block.cache_control is not None for block in system):
        parts: list[canonical.ContentPart] = [_text_part(block) for block in system]
        return [canonical.SystemMessage(content=parts)]
    return [canonical.SystemMessage(content="\n".join(block.text for block in system))]


def _user_turn(content: str | list[wire.ContentBlock], path: str) -> list[canonical.Message]:
    """A user turn: its tool results first, as canonical tool messages, then its other parts.

    Anthropic requires tool results to lead the turn; OpenAI requires tool messages to
    follow the assistant's tool calls directly, so they go before the user message.
    """
    if isinstance(content, str):
        return [canonical.UserMessage(content=content)]
    tool_messages: list[canonical.Message] = []
    parts: list[canonical.ContentPart] = []
    for j, block in enumerate(content):
        if isinstance(block, wire.ToolResultBlock):
            tool_messages.append(_tool_message(block))
        elif isinstance(block, wire.TextBlock):
            parts.append(_text_part(block))
        elif isinstance(block, wire.ImageBlock):
            parts.append(_image_part(block, f"{path}[{j}]"))
        else:
            raise _unsupported_block(block)
    return tool_messages + ([canonical.UserMessage(content=parts)] if parts else [])


def _assistant_turn(content: str | list[wire.ContentBlock]) -> list[canonical.Message]:
    if isinstance(content, str):
        return [canonical.AssistantMessage(content=content)]
    parts: list[canonical.ContentPart] = []
    tool_calls: list[canonical.ToolCall] = []
    for block in content:
        if isinstance(block, wire.TextBlock):
            parts.append(_text_part(block))
        elif isinstance(block, wire.ToolUseBlock):
            tool_calls.append(_tool_call(block))
        elif isinstance(block, wire.ThinkingBlock | wire.RedactedThinkingBlock):
            # Canonical messages have no place for thinking, and Orqen never returns
            # thinking blocks, so these can only come from a conversation held elsewhere.
            # Their signatures are only valid for the Anthropic model that wrote them.
            continue
        else:
            raise _unsupported_block(block)
    if not parts and not tool_calls:
        return []  # nothing left once thinking is dropped: no empty assistant turn
    return [canonical.AssistantMessage(content=parts or None, tool_calls=tool_calls or None)]


def _unsupported_block(block: wire.ContentBlock) -> OrqenError:
    return unsupported(f"Anthropic '{block.__struct_config__.tag}' content blocks", _CANONICAL)


def _text_part(block: wire.TextBlock) -> canonical.TextPart:
    return canonical.TextPart(text=block.text, cache_control=block.cache_control)


def _image_part(block: wire.ImageBlock, path: str) -> canonical.ImagePart:
    source = block.source
    if isinstance(source, wire.Base64Source):
        try:
            base64.b64decode(source.data, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("Invalid base64 data", f"{path}.source.data") from None
        url = data_url(source.media_type, source.data)
    elif isinstance(source, wire.URLSource):
        url = source.url
    else:
        raise unsupported(f"An Anthropic image with a {source.__struct_config__.tag!r} source", _CANONICAL)
    return canonical.ImagePart(image_url=canonical.ImageURL(url=url), cache_control=block.cache_control)


def _tool_message(block: wire.ToolResultBlock) -> canonical.ToolMessage:
    """A canonical tool message; `is_error` travels as the canonical extension of that name."""
    content: canonical.Content
    if isinstance(block.content, list):
        parts: list[canonical.ContentPart] = []
        for item in block.content:
            if isinstance(item, wire.ImageBlock):
                raise unsupported("An image inside an Anthropic tool result", _CANONICAL)
            if not isinstance(item, wire.TextBlock):
                raise _unsupported_block(item)
            parts.append(_text_part(item))
        content = parts or ""
    else:
        content = block.content or ""
    if block.cache_control is not None:
        content = _cache_marked(content, block.cache_control)
    return canonical.ToolMessage(
        tool_call_id=block.tool_use_id, content=content, is_error=True if block.is_error else None
    )


def _tool_call(block: wire.ToolUseBlock) -> canonical.ToolCall:
    arguments = msgspec.json.encode(block.input or {}).decode()
    return canonical.ToolCall(id=block.id, function=canonical.FunctionCall(name=block.name, arguments=arguments))


def _cache_marked(content: canonical.Content, cache_control: CacheControl) -> canonical.Content:
    """Content with a cache breakpoint on its last part; unchanged when there is no part to mark."""
    if isinstance(content, str):
        return [canonical.TextPart(text=content, cache_control=cache_control)] if content else content
    if content and isinstance(content[-1], canonical.TextPart | canonical.ImagePart):
        return [*content[:-1], msgspec.structs.replace(content[-1], cache_control=cache_control)]
    return content


def _mark_last_block(messages: list[canonical.Message], cache_control: CacheControl) -> None:
    """Top-level cache_control: Anthropic puts the breakpoint on the last cacheable block.

    A trailing assistant turn of tool calls only has no canonical part to mark; the hint
    is dropped then.
    """
    last = messages[-1] if messages else None
    turn = canonical.SystemMessage | canonical.UserMessage | canonical.ToolMessage | canonical.AssistantMessage
    if isinstance(last, turn) and last.content is not None:
        last.content = _cache_marked(last.content, cache_control)


# ---------------------------------------------------------------------------------------
# Request: tools and sampling


def _tools(
    tools: list[wire.Tool] | None, tool_choice: wire.ToolChoice | None
) -> tuple[list[canonical.AnyTool] | None, canonical.ToolChoice | None, bool | None]:
    """Canonical `tools`, `tool_choice` and `parallel_tool_calls`."""
    canonical_tools: list[canonical.AnyTool] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools or ())]
    if tool_choice is None:
        return canonical_tools or None, None, None
    if not canonical_tools:
        # Without tools "auto" and "none" mean the same as no tools; forcing a call cannot work.
        if isinstance(tool_choice, wire.ToolChoiceAny | wire.ToolChoiceTool):
            raise _invalid(f"'{tool_choice.__struct_config__.tag}' requires 'tools'", "tool_choice")
        return None, None, None
    choice: canonical.ToolChoice
    if isinstance(tool_choice, wire.ToolChoiceAuto):
        choice = "auto"
    elif isinstance(tool_choice, wire.ToolChoiceNone):
        return canonical_tools, "none", None
    elif isinstance(tool_choice, wire.ToolChoiceAny):
        choice = "required"
    else:
        choice = canonical.NamedToolChoice(function=canonical.ToolChoiceFunction(name=tool_choice.name))
    return canonical_tools, choice, False if tool_choice.disable_parallel_tool_use else None


def _tool(tool: wire.Tool, path: str) -> canonical.Tool:
    """A canonical function tool for a custom tool; Anthropic's server tools are refused."""
    # The decoder keeps the schema as JSON text (formats.openai.JsonObject): its type is checked here.
    schema = checked_object(tool.input_schema, f"$.{path}.input_schema")
    if tool.type not in (None, "custom"):
        raise unsupported(f"The Anthropic server tool {tool.type!r}", _CANONICAL)
    if schema is UNSET:
        raise _invalid("Object missing required field `input_schema`", path)
    function = canonical.FunctionDefinition(
        name=tool.name,
        description=tool.description,
        parameters=schema,
        strict=tool.strict,
        # Orqen's routing examples, where the canonical tool keeps them; stripped before dispatch.
        examples=tool.examples,
    )
    return canonical.Tool(function=function, cache_control=tool.cache_control)


def _thinking(thinking: wire.ThinkingConfig | None) -> dict[str, Any] | None:
    """The thinking extension; "disabled" is the same as none, so it is not passed on."""
    if thinking is None or thinking.type == "disabled":
        return None
    config: dict[str, Any] = msgspec.to_builtins(thinking)
    return config


# ---------------------------------------------------------------------------------------
# Reply


class AnthropicReply:
    """Canonical answers as Anthropic `Message` JSON or Messages API server-sent events."""

    stream_media_type = "text/event-stream"

    def body(self, completion: ChatCompletion) -> bytes:
        content: list[wire.ResponseBlock] = []
        finish: str | None = None
        stop_sequence: str | None = None
        if completion.choices:
            choice = completion.choices[0]
            finish, stop_sequence = choice.finish_reason, _sequence(choice.stop_sequence)
            if text := text_of(choice.message.content):
                content.append(wire.TextBlock(text=text))
            if isinstance(choice.message.tool_calls, list):
                content += [_tool_use(call) for call in choice.message.tool_calls]
        reason, sequence = _stop(finish, stop_sequence)
        message = wire.Message(
            id=_message_id(completion.id),
            model=completion.model,
            content=content,
            stop_reason=reason,
            stop_sequence=sequence,
            usage=wire.Usage.of(TokenUsage.from_canonical(completion.usage)),
        )
        return encode(message)

    async def stream(self, batches: AsyncIterator[list[ChatCompletionChunk]]) -> AsyncIterator[bytes]:
        """message_start, ping, the content blocks, then message_delta with the final usage, message_stop.

        message_delta waits for the canonical usage chunk that ends the stream: most
        providers report input tokens only there, and Anthropic SDKs take the totals
        from message_delta.
        """
        blocks = BlockSequencer()
        started = False
        finish: str | None = None
        stop_sequence: str | None = None
        usage: canonical.CompletionUsage | None = None
        async for batch in batches:
            events: list[bytes] = []
            for chunk in batch:
                if not started:
                    started = True
                    events += [_event(_message_start(chunk)), _event(wire.Ping())]
                if isinstance(chunk.usage, canonical.CompletionUsage):
                    usage = chunk.usage
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    if choice.finish_reason and finish is None:
                        finish, stop_sequence = choice.finish_reason, _sequence(choice.stop_sequence)
                    events += [_event(_block_event(event)) for event in blocks.feed(choice)]
            if events:
                yield b"".join(events)
        if not started or finish is None:
            raise _bad_gateway("The provider's stream ended before the answer was complete.")
        reason, stop_sequence = _stop(finish, stop_sequence)
        end = wire.MessageDelta(
            delta=wire.StopDelta(stop_reason=reason, stop_sequence=stop_sequence),
            usage=wire.Usage.of(TokenUsage.from_canonical(usage)),
        )
        # Both are ready together (after the request event is stored): one write, not two.
        yield _event(end) + _event(wire.MessageStop())

    def stream_error(self, err: OrqenError) -> bytes:
        return _sse("error", msgspec.json.encode(error_body(err, "anthropic")))


def _tool_use(call: canonical.ToolCall) -> wire.ToolUseBlock:
    name = call.function.name
    return wire.ToolUseBlock(
        id=call.id or new_tool_call_id(), name=name, input=tool_input(call.function.arguments, name)
    )


def _block_event(event: BlockEvent) -> wire.StreamEvent:
    """A content block event as the Messages API streams it."""
    if isinstance(event, BlockStart):
        block: wire.ResponseBlock = (
            wire.TextBlock(text="")
            if event.kind == "text"
            else wire.ToolUseBlock(id=event.tool_id, name=event.name, input={})
        )
        return wire.ContentBlockStart(index=event.index, content_block=block)
    if isinstance(event, BlockDelta):
        delta: wire.BlockDelta = (
            wire.TextDelta(text=event.data) if event.kind == "text" else wire.InputJSONDelta(partial_json=event.data)
        )
        return wire.ContentBlockDelta(index=event.index, delta=delta)
    return wire.ContentBlockStop(index=event.index)


def _message_start(chunk: ChatCompletionChunk) -> wire.MessageStart:
    """message_start from the first chunk; usage is zero unless this chunk already has it."""
    message = wire.Message(
        id=_message_id(chunk.id),
        model=chunk.model,
        content=[],
        usage=wire.Usage.of(TokenUsage.from_canonical(chunk.usage)),
    )
    return wire.MessageStart(message=message)


def _event(event: wire.StreamEvent) -> bytes:
    return _sse(str(event.__struct_config__.tag), encode(event))


def _sse(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _message_id(canonical_id: str) -> str:
    if not canonical_id:
        return "msg_" + secrets.token_hex(12)
    return canonical_id if canonical_id.startswith("msg_") else "msg_" + canonical_id


def _sequence(stop_sequence: str | msgspec.UnsetType | None) -> str | None:
    return stop_sequence if isinstance(stop_sequence, str) else None


def _stop(finish: str | None, stop_sequence: str | None) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for a canonical finish.

    A canonical stop_sequence of "" says a stop sequence ended generation without saying
    which: still stop_reason "stop_sequence", with the sequence unknown (null).
    """
    reason = stop_reason(finish, stop_sequence)
    if reason == "content_filtered":
        reason = "refusal"  # Anthropic's name for a filtered answer
    return reason, (stop_sequence or None) if reason == "stop_sequence" else None


def _bad_gateway(message: str) -> OrqenError:
    return OrqenError(INTERNAL, message, http_status=502)
