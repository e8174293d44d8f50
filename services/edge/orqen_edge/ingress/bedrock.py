"""Bedrock ingress: POST /model/{modelId}/converse and /converse-stream, as boto3's bedrock-runtime sends them.

The Converse request (`orqen_common.formats.bedrock`, validated as it is decoded) becomes
the canonical (OpenAI) request; the canonical answer becomes the Converse response, or
ConverseStream's `application/vnd.amazon.eventstream` frames.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any
from urllib.parse import unquote

import msgspec
from litestar import Request, Response, post
from litestar.types import Scope
from msgspec import UnsetType

from orqen_common.canonical import TokenUsage, data_url, new_tool_call_id, stop_reason, unsupported
from orqen_common.errors import OrqenError, invalid_request, not_found
from orqen_common.formats import bedrock
from orqen_common.formats.bedrock_eventstream import exception_frame
from orqen_common.formats.openai import (
    AnyTool,
    AssistantMessage,
    CacheControl,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    CompletionUsage,
    Content,
    ContentPart,
    FunctionCall,
    FunctionDefinition,
    ImagePart,
    ImageURL,
    Message,
    NamedToolChoice,
    SystemMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceFunction,
    ToolMessage,
    UserMessage,
    encode,
)
from orqen_edge.auth import chat_caller
from orqen_edge.ingress.content_blocks import BlockDelta, BlockEvent, BlockSequencer, BlockStart, BlockStop, tool_input
from orqen_edge.ingress.pipeline import Reply, serve_chat
from orqen_edge.openapi import API_KEY, PROVIDER, errors, json_body

INGRESS = "bedrock"
WHERE = "Orqen's Bedrock Converse API"

# Matched on the raw path: boto3 percent-encodes the model id, and an ARN holds '/' and ':'.
_CONVERSE_PATH = re.compile(r"^/model/(?P<id>.+)/(?P<op>converse|converse-stream)$")

# A vendor-prefixed model id, optionally behind the geo prefix of a cross-region inference profile.
_NATIVE_MODEL_ID = re.compile(
    r"^(?:(?:us|eu|apac|us-gov|global|jp|au|ca)\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|stability|deepseek|qwen|openai|writer|twelvelabs|luma)\."
)

# A part or a tool that a following cachePoint marks.
_Cacheable = TextPart | ImagePart | Tool


# ---- route -----------------------------------------------------------------------------------


@post(
    "/model/{model_path:path}",
    summary="Converse and ConverseStream (boto3 bedrock-runtime)",
    description="The path is /model/{modelId}/converse or /model/{modelId}/converse-stream.",
    status_code=200,
    security=API_KEY,
    operation_class=json_body(bedrock.ConverseRequest),
    responses=errors(*PROVIDER, ingress="bedrock"),
)
async def converse(request: Request[Any, Any, Any]) -> Response[Any]:
    runtime, principal = await chat_caller(request)
    model_id, stream = parse_converse_path(raw_path(request.scope))
    return await serve_chat(request, runtime, principal, INGRESS, partial(translate, model_id=model_id, stream=stream))


def raw_path(scope: Scope) -> str:
    """The path as sent, percent-encoding intact; ASGI servers may omit raw_path, then the decoded one."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace").split("?", 1)[0]
    return str(scope["path"])


def parse_converse_path(path: str) -> tuple[str, bool]:
    """(model id, whether to stream) of /model/{modelId}/converse[-stream]; 404 for any other /model path."""
    match = _CONVERSE_PATH.match(path)
    if match is None:
        raise not_found(f"Unknown operation {path}: Orqen serves /model/{{modelId}}/converse and /converse-stream.")
    return unquote(match["id"]), match["op"] == "converse-stream"


def canonical_model(model_id: str) -> str:
    """A native Bedrock model id or ARN goes to Bedrock unchanged; any other name is Orqen's to route."""
    if model_id.startswith("arn:aws") or _NATIVE_MODEL_ID.match(model_id):
        return "bedrock/" + model_id
    return model_id


# ---- request: Converse -> canonical -------------------------------------------------------------


def translate(body: bytes, *, model_id: str, stream: bool) -> tuple[ChatRequest, Reply]:
    """The canonical request for a Converse request body, and the reply that answers it in Converse's shape."""
    converse = bedrock.decode_request(body)
    _refuse_untranslatable(converse)
    system = _system(converse.system or [])
    messages: list[Message] = [system] if system else []
    messages += _messages(converse.messages)
    inference = converse.inference_config or bedrock.InferenceConfiguration()
    tools, tool_choice = _tool_config(converse.tool_config) if converse.tool_config else (None, None)
    fields = converse.additional_model_request_fields
    model_fields = _model_fields(fields) if fields is not None else bedrock.ModelFields()
    chat = ChatRequest(
        model=canonical_model(model_id),
        messages=messages,
        max_tokens=inference.max_tokens,
        temperature=inference.temperature,
        top_p=inference.top_p,
        stop=inference.stop_sequences,
        tools=tools,
        tool_choice=tool_choice,
        top_k=model_fields.top_k,
        thinking=model_fields.thinking,
        anthropic_beta=model_fields.anthropic_beta,
        stream=True if stream else None,
    )
    return chat, BedrockReply()


def _refuse_untranslatable(converse: bedrock.ConverseRequest) -> None:
    """400 for the features that would change the answer and that Orqen cannot honour.

    The other fields Orqen does not translate (requestMetadata, performanceConfig,
    additionalModelResponseFieldPaths, serviceTier) are hints: dropping them leaves the answer unchanged.
    """
    refused = {
        "guardrailConfig": converse.guardrail_config,
        "promptVariables": converse.prompt_variables,
        "outputConfig": converse.output_config,
    }
    for name, value in refused.items():
        if value is not None:
            raise unsupported(f"'{name}'", WHERE)


def _messages(messages: list[bedrock.Message]) -> list[Message]:
    out: list[Message] = []
    for i, message in enumerate(messages):
        where = f"$.messages[{i}]"
        if message.role == "user":
            out.extend(_user_turn(message.content, where))
        else:
            out.append(_assistant_turn(message.content, where))
    return out


def _user_turn(blocks: list[bedrock.ContentBlock], where: str) -> list[Message]:
    """Tool results become canonical tool messages, placed before the user's own parts."""
    results: list[tuple[bedrock.ToolResultBlock, list[TextPart]]] = []
    parts: list[ContentPart] = []
    last: _Cacheable | None = None  # what a following cachePoint marks
    for j, block in enumerate(blocks):
        if block.text is not None:
            last = TextPart(text=block.text)
            parts.append(last)
        elif block.image is not None:
            last = _image_part(block.image)
            parts.append(last)
        elif block.tool_result is not None:
            result_parts = _tool_result_parts(block.tool_result)
            results.append((block.tool_result, result_parts))
            last = result_parts[-1] if result_parts else None
        elif block.cache_point is not None:
            _mark_cache_point(last, block.cache_point)
        elif block.tool_use is not None:
            raise invalid_request(f"A toolUse block belongs in an assistant message - at `{where}.content[{j}]`.")
        else:
            raise unsupported(f"The '{block.kind}' content block", WHERE)
    messages: list[Message] = [
        ToolMessage(
            content=_collapse(result_parts),
            tool_call_id=result.tool_use_id,
            # `status: error` travels as the canonical `is_error` extension.
            is_error=True if result.status == "error" else None,
        )
        for result, result_parts in results
    ]
    if parts:
        messages.append(UserMessage(content=_collapse(parts)))
    return messages


def _assistant_turn(blocks: list[bedrock.ContentBlock], where: str) -> AssistantMessage:
    parts: list[ContentPart] = []
    tool_calls: list[ToolCall] = []
    last: TextPart | None = None
    for j, block in enumerate(blocks):
        if block.text is not None:
            last = TextPart(text=block.text)
            parts.append(last)
        elif block.tool_use is not None:
            tool_calls.append(_tool_call(block.tool_use))
        elif block.cache_point is not None:
            # After a toolUse this marks the text before the call: a tool call has no part to carry it.
            _mark_cache_point(last, block.cache_point)
        elif block.reasoning_content is not None:
            # The canonical shape has no place for a model's reasoning, and providers take
            # history without it: it is the model's scratch work, not part of the conversation.
            continue
        elif block.tool_result is not None:
            raise invalid_request(f"A toolResult block belongs in a user message - at `{where}.content[{j}]`.")
        else:
            raise unsupported(f"The '{block.kind}' content block in an assistant message", WHERE)
    return AssistantMessage(
        content=_collapse(parts) if parts or not tool_calls else None,
        tool_calls=tool_calls or None,
    )


def _system(blocks: list[bedrock.SystemContentBlock]) -> SystemMessage | None:
    parts: list[ContentPart] = []
    last: TextPart | None = None
    for block in blocks:
        if block.text is not None:
            last = TextPart(text=block.text)
            parts.append(last)
        elif block.cache_point is not None:
            _mark_cache_point(last, block.cache_point)
        else:
            raise unsupported(f"The '{block.kind}' system block", WHERE)
    return SystemMessage(content=_collapse(parts)) if parts else None


def _image_part(image: bedrock.ImageBlock) -> ImagePart:
    if image.source.data is None:
        raise unsupported(f"The image source '{image.source.kind}'", WHERE)
    b64 = base64.b64encode(image.source.data).decode()
    return ImagePart(image_url=ImageURL(url=data_url(f"image/{image.format}", b64)))


def _tool_call(use: bedrock.ToolUseBlock) -> ToolCall:
    if use.type is not None:
        raise unsupported(f"A toolUse of type {use.type!r}", WHERE)
    return ToolCall(id=use.tool_use_id, function=FunctionCall(name=use.name, arguments=_json_text(use.input)))


def _tool_result_parts(result: bedrock.ToolResultBlock) -> list[TextPart]:
    """The tool message's text parts (a cachePoint after the result may still mark the last)."""
    parts: list[TextPart] = []
    for item in result.content:
        if item.text is not None:
            parts.append(TextPart(text=item.text))
        elif item.json is not None:
            parts.append(TextPart(text=_json_text(item.json)))
        else:
            raise unsupported(f"The '{item.kind}' block in a tool result", WHERE)
    return parts


def _mark_cache_point(last: _Cacheable | None, point: bedrock.CachePointBlock) -> None:
    """A cachePoint is a caching hint on the part before it; with no part before it there is nothing to mark."""
    if last is not None:
        last.cache_control = CacheControl(type="ephemeral", ttl=point.ttl)


def _collapse(parts: Sequence[ContentPart]) -> Content:
    """A lone plain text part as a plain string, the simplest canonical form; else the parts."""
    if not parts:
        return ""
    first = parts[0]
    if len(parts) == 1 and isinstance(first, TextPart) and first.cache_control is None:
        return first.text
    return list(parts)


def _tool_config(config: bedrock.ToolConfiguration) -> tuple[list[AnyTool], ToolChoice | None]:
    tools: list[Tool] = []
    for entry in config.tools:
        if entry.tool_spec is not None:
            tools.append(_tool(entry.tool_spec))
        elif entry.cache_point is not None:
            _mark_cache_point(tools[-1] if tools else None, entry.cache_point)
        else:
            raise unsupported(f"The '{entry.kind}' tool", WHERE)
    if not tools:
        raise invalid_request("Expected at least one `toolSpec` - at `$.toolConfig.tools`.")
    return list[AnyTool](tools), _tool_choice(config.tool_choice) if config.tool_choice else None


def _tool(spec: bedrock.ToolSpecification) -> Tool:
    return Tool(
        function=FunctionDefinition(
            name=spec.name, description=spec.description, parameters=spec.input_schema.json, strict=spec.strict
        )
    )


def _tool_choice(choice: bedrock.ToolChoice) -> ToolChoice:
    if choice.tool is not None:
        return NamedToolChoice(function=ToolChoiceFunction(name=choice.tool.name))
    return "required" if choice.any is not None else "auto"


def _model_fields(fields: dict[str, Any]) -> bedrock.ModelFields:
    """additionalModelRequestFields that have a canonical extension of the same name; others are refused."""
    unknown = sorted(set(fields) - bedrock.MODEL_FIELDS)
    if unknown:
        raise unsupported(f"additionalModelRequestFields {', '.join(map(repr, unknown))}", WHERE)
    return bedrock.decode_model_fields(fields)


def _json_text(value: object) -> str:
    return msgspec.json.encode(value).decode()


# ---- reply: canonical -> Converse -------------------------------------------------------------------


class BedrockReply:
    """Answers in Converse's JSON, or as ConverseStream's event stream."""

    stream_media_type = "application/vnd.amazon.eventstream"

    def __init__(self) -> None:
        self._started = time.perf_counter()

    def body(self, completion: ChatCompletion) -> bytes:
        content: list[bedrock.OutputBlock] = []
        choice = completion.choices[0] if completion.choices else None
        if choice is not None:
            message = choice.message
            if message.content:
                content.append(bedrock.OutputBlock(text=message.content))
            content.extend(bedrock.OutputBlock(tool_use=_output_tool_use(call)) for call in message.tool_calls or ())
        response = bedrock.ConverseResponse(
            output=bedrock.ConverseOutput(message=bedrock.OutputMessage(role="assistant", content=content)),
            stop_reason=stop_reason(choice.finish_reason, _stop_sequence(choice)) if choice else stop_reason(None),
            usage=_usage(completion.usage),
            metrics=bedrock.Metrics(latency_ms=self._latency_ms()),
        )
        return encode(response)

    async def stream(self, batches: AsyncIterator[list[ChatCompletionChunk]]) -> AsyncIterator[bytes]:
        """messageStart, the content blocks, messageStop, then metadata once the usage chunk is in."""
        blocks = BlockSequencer()
        usage: CompletionUsage | None = None
        frames = [bedrock.frame(bedrock.MessageStartEvent(role="assistant"))]
        async for batch in batches:
            for chunk in batch:
                if isinstance(chunk.usage, CompletionUsage):
                    usage = chunk.usage
                if not chunk.choices or blocks.finished:  # after the finish only the usage chunk counts
                    continue
                choice = chunk.choices[0]
                frames += _frames(blocks.feed(choice))
                if blocks.finished:
                    frames.append(_message_stop(choice.finish_reason, _stop_sequence(choice)))
            if frames:
                yield b"".join(frames)
                frames = []
        if not blocks.finished:  # (messageStart is still in `frames` if no chunk came)
            yield b"".join([*frames, *_frames(blocks.finish()), _message_stop(None, None)])
        metrics = bedrock.Metrics(latency_ms=self._latency_ms())
        yield bedrock.frame(bedrock.MetadataEvent(usage=_usage(usage), metrics=metrics))

    def stream_error(self, err: OrqenError) -> bytes:
        return exception_frame(stream_exception_type(err.kind.bedrock_code), err.message)

    def _latency_ms(self) -> int:
        return int((time.perf_counter() - self._started) * 1000)


def stream_exception_type(bedrock_code: str) -> str:
    """The event name of an error code in a stream: ThrottlingException -> throttlingException.

    botocore drops the code and message of an exception ConverseStream does not model, so
    the other codes (a timeout, say) travel as the generic modelStreamErrorException.
    """
    event_type = bedrock_code[:1].lower() + bedrock_code[1:]
    return event_type if event_type in bedrock.STREAM_EXCEPTIONS else "modelStreamErrorException"


def _output_tool_use(call: ToolCall) -> bedrock.OutputToolUse:
    name = call.function.name
    return bedrock.OutputToolUse(
        tool_use_id=call.id or new_tool_call_id(), name=name, input=tool_input(call.function.arguments, name)
    )


def _stop_sequence(choice: Choice | ChunkChoice) -> str | None:
    """The stop sequence that ended the answer ("" when the provider did not say which), else None."""
    return None if isinstance(choice.stop_sequence, UnsetType) else choice.stop_sequence


def _usage(usage: CompletionUsage | UnsetType | None) -> bedrock.Usage:
    return bedrock.Usage.of(TokenUsage.from_canonical(usage))


def _frames(events: list[BlockEvent]) -> list[bytes]:
    """ConverseStream's frames for content block events; Bedrock opens a text block with its first delta."""
    frames: list[bytes] = []
    for event in events:
        if isinstance(event, BlockStart) and event.kind == "tool":
            tool_use = bedrock.ToolUseBlockStart(tool_use_id=event.tool_id, name=event.name)
            start = bedrock.ContentBlockStartEvent(
                content_block_index=event.index, start=bedrock.ContentBlockStart(tool_use=tool_use)
            )
            frames.append(bedrock.frame(start))
        elif isinstance(event, BlockDelta):
            if event.kind == "text":
                delta = bedrock.ContentBlockDelta(text=event.data)
            else:
                delta = bedrock.ContentBlockDelta(tool_use=bedrock.ToolUseBlockDelta(input=event.data))
            frames.append(bedrock.frame(bedrock.ContentBlockDeltaEvent(content_block_index=event.index, delta=delta)))
        elif isinstance(event, BlockStop):
            frames.append(bedrock.frame(bedrock.ContentBlockStopEvent(content_block_index=event.index)))
    return frames


def _message_stop(finish_reason: str | None, stop_sequence: str | None) -> bytes:
    return bedrock.frame(bedrock.MessageStopEvent(stop_reason=stop_reason(finish_reason, stop_sequence)))
