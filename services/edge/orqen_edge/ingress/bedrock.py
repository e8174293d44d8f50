"""Bedrock ingress: POST /model/{modelId}/converse and /converse-stream, as boto3's bedrock-runtime sends them.

The Converse request becomes the canonical (OpenAI) request; the canonical answer becomes
the Converse response JSON, or ConverseStream's `application/vnd.amazon.eventstream` frames.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import unquote

import orjson
from litestar import Request, Response, post
from litestar.di import NamedDependency

from orqen_common.canonical import TokenUsage, data_url, new_tool_call_id, stop_reason, text_of, unsupported
from orqen_common.context import Principal
from orqen_common.errors import OrqenError, invalid_request, not_found
from orqen_common.eventstream import event_frame, exception_frame
from orqen_edge.ingress.content_blocks import BlockDelta, BlockEvent, BlockSequencer, BlockStart, BlockStop, tool_input
from orqen_edge.ingress.pipeline import Reply, serve_chat
from orqen_edge.runtime import Runtime

INGRESS = "bedrock"
WHERE = "Orqen's Bedrock Converse API"

# Matched on the raw path: boto3 percent-encodes the model id, and an ARN holds '/' and ':'.
_CONVERSE_PATH = re.compile(r"^/model/(?P<id>.+)/(?P<op>converse|converse-stream)$")

# A vendor-prefixed model id, optionally behind the geo prefix of a cross-region inference profile.
_NATIVE_MODEL_ID = re.compile(
    r"^(?:(?:us|eu|apac|us-gov|global|jp|au|ca)\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|stability|deepseek|qwen|openai|writer|twelvelabs|luma)\."
)

_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
_TOP_LEVEL_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}
# Fields that would change the answer and that Orqen cannot honour.
_UNSUPPORTED_FIELDS = ("guardrailConfig", "promptVariables", "outputConfig")
# Hints about logging, latency tier and response extras: dropping them leaves the answer unchanged.
_IGNORED_FIELDS = {"requestMetadata", "performanceConfig", "additionalModelResponseFieldPaths", "serviceTier"}
_INFERENCE_FIELDS = {"maxTokens": "max_tokens", "temperature": "temperature", "topP": "top_p", "stopSequences": "stop"}
# The exceptions ConverseStream's event union models.
_STREAM_EXCEPTIONS = {
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
}
# additionalModelRequestFields that have a canonical extension of the same name.
_MODEL_FIELDS = ("top_k", "thinking", "anthropic_beta")


# ---- route -----------------------------------------------------------------------------------


@post("/model/{model_path:path}", summary="Converse and ConverseStream (boto3 bedrock-runtime)", status_code=200)
async def converse(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> Response[Any]:
    model_id, stream = parse_converse_path(raw_path(request.scope))
    return await serve_chat(request, runtime, principal, INGRESS, partial(translate, model_id=model_id, stream=stream))


def raw_path(scope: Any) -> str:
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


def translate(body: Any, *, model_id: str, stream: bool) -> tuple[dict[str, Any], Reply]:
    """The canonical request for a Converse request body, and the reply that answers it in Converse's shape."""
    body = _object(body, "The request body")
    for key in body:
        if key in _UNSUPPORTED_FIELDS:
            raise unsupported(f"'{key}'", WHERE)
        if key not in _TOP_LEVEL_FIELDS and key not in _IGNORED_FIELDS:
            raise invalid_request(f"Unknown field '{key}' in the Converse request.")
    chat: dict[str, Any] = {"model": canonical_model(model_id)}
    system = _system(body["system"]) if "system" in body else None
    chat["messages"] = ([system] if system else []) + _messages(body.get("messages"))
    if "inferenceConfig" in body:
        chat.update(_inference_config(body["inferenceConfig"]))
    if "toolConfig" in body:
        chat.update(_tool_config(body["toolConfig"]))
    if "additionalModelRequestFields" in body:
        chat.update(_model_fields(body["additionalModelRequestFields"]))
    if stream:
        chat["stream"] = True
    return chat, BedrockReply()


def _messages(value: Any) -> list[dict[str, Any]]:
    messages = _array(value, "messages")
    if not messages:
        raise invalid_request("'messages' is required and must be a non-empty array.")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        message = _object(message, where)
        _known_keys(message, {"role", "content"}, where)
        blocks = _array(message.get("content"), f"{where}.content")
        if not blocks:
            raise invalid_request(f"'{where}.content' must not be empty.")
        role = message.get("role")
        if role == "user":
            out.extend(_user_turn(blocks, where))
        elif role == "assistant":
            out.append(_assistant_turn(blocks, where))
        else:
            raise invalid_request(f"'{where}.role' must be 'user' or 'assistant'.")
    return out


def _user_turn(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """Tool results become canonical tool messages, placed before the user's own parts."""
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    last: list[dict[str, Any]] = []  # the parts a following cachePoint marks
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind, value = _union(block, at)
        if kind == "text":
            parts.append(_text_part(value, f"{at}.text"))
            last = parts
        elif kind == "image":
            parts.append(_image_part(value, f"{at}.image"))
            last = parts
        elif kind == "toolResult":
            tool_parts, message = _tool_result(value, f"{at}.toolResult")
            tool_messages.append(message)
            last = tool_parts
        elif kind == "cachePoint":
            _mark_cache_point(last, value, f"{at}.cachePoint")
        elif kind == "toolUse":
            raise invalid_request(f"'{at}': toolUse blocks belong in assistant messages.")
        else:
            raise unsupported(f"The '{kind}' content block", WHERE)
    for message in tool_messages:
        message["content"] = _collapse(message["content"])
    if not parts:
        return tool_messages
    return [*tool_messages, {"role": "user", "content": _collapse(parts)}]


def _assistant_turn(blocks: list[Any], where: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content[{j}]"
        kind, value = _union(block, at)
        if kind == "text":
            parts.append(_text_part(value, f"{at}.text"))
        elif kind == "toolUse":
            tool_calls.append(_tool_call(value, f"{at}.toolUse"))
        elif kind == "cachePoint":
            # After a toolUse this marks the text before the call: a tool call has no part to carry it.
            _mark_cache_point(parts, value, f"{at}.cachePoint")
        elif kind == "reasoningContent":
            # The canonical shape has no place for a model's reasoning, and providers take
            # history without it: it is the model's scratch work, not part of the conversation.
            continue
        elif kind == "toolResult":
            raise invalid_request(f"'{at}': toolResult blocks belong in user messages.")
        else:
            raise unsupported(f"The '{kind}' content block in an assistant message", WHERE)
    message: dict[str, Any] = {"role": "assistant", "content": _collapse(parts) if parts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _system(value: Any) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(_array(value, "system")):
        at = f"system[{j}]"
        kind, item = _union(block, at)
        if kind == "text":
            parts.append(_text_part(item, f"{at}.text"))
        elif kind == "cachePoint":
            _mark_cache_point(parts, item, f"{at}.cachePoint")
        else:
            raise unsupported(f"The '{kind}' system block", WHERE)
    return {"role": "system", "content": _collapse(parts)} if parts else None


def _text_part(value: Any, where: str) -> dict[str, Any]:
    return {"type": "text", "text": _string(value, where)}


def _image_part(value: Any, where: str) -> dict[str, Any]:
    image = _object(value, where)
    _known_keys(image, {"format", "source"}, where)
    image_format = image.get("format")
    if image_format not in _IMAGE_FORMATS:
        raise invalid_request(f"'{where}.format' must be one of {', '.join(_IMAGE_FORMATS)}.")
    kind, payload = _union(image.get("source"), f"{where}.source")
    if kind != "bytes":
        raise unsupported(f"The image source '{kind}'", WHERE)
    b64 = _string(payload, f"{where}.source.bytes")
    try:
        base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"'{where}.source.bytes' is not valid base64.") from None
    return {"type": "image_url", "image_url": {"url": data_url(f"image/{image_format}", b64)}}


def _tool_call(value: Any, where: str) -> dict[str, Any]:
    use = _object(value, where)
    _known_keys(use, {"toolUseId", "name", "input", "type"}, where)
    if "type" in use:
        raise unsupported(f"A toolUse of type {use['type']!r}", WHERE)
    if "input" not in use:
        raise invalid_request(f"'{where}.input' is required.")
    return {
        "id": _string(use.get("toolUseId"), f"{where}.toolUseId"),
        "type": "function",
        "function": {"name": _string(use.get("name"), f"{where}.name"), "arguments": _json_text(use["input"])},
    }


def _tool_result(value: Any, where: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The tool message's text parts (a cachePoint may still mark the last) and the message.

    `status: error` travels as the canonical `is_error` extension.
    """
    result = _object(value, where)
    _known_keys(result, {"toolUseId", "content", "status", "type"}, where)
    if result.get("status", "success") not in ("success", "error"):
        raise invalid_request(f"'{where}.status' must be 'success' or 'error'.")
    parts: list[dict[str, Any]] = []
    for k, block in enumerate(_array(result.get("content"), f"{where}.content")):
        kind, item = _union(block, f"{where}.content[{k}]")
        if kind == "text":
            parts.append(_text_part(item, f"{where}.content[{k}].text"))
        elif kind == "json":
            parts.append({"type": "text", "text": _json_text(item)})
        else:
            raise unsupported(f"The '{kind}' block in a tool result", WHERE)
    call_id = _string(result.get("toolUseId"), f"{where}.toolUseId")
    message: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": parts}
    if result.get("status") == "error":
        message["is_error"] = True
    return parts, message


def _mark_cache_point(parts: list[dict[str, Any]], value: Any, where: str) -> None:
    """A cachePoint is a caching hint on the part before it; with no part before it there is nothing to mark."""
    point = _object(value, where)
    _known_keys(point, {"type", "ttl"}, where)
    if not parts:
        return
    cache_control = {"type": "ephemeral"}
    if isinstance(point.get("ttl"), str):
        cache_control["ttl"] = point["ttl"]
    parts[-1]["cache_control"] = cache_control


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A lone plain text part as a plain string, the simplest canonical form; else the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    if not parts:
        return ""
    return parts


def _inference_config(value: Any) -> dict[str, Any]:
    config = _object(value, "inferenceConfig")
    _known_keys(config, set(_INFERENCE_FIELDS), "inferenceConfig")
    out: dict[str, Any] = {}
    if "maxTokens" in config:
        max_tokens = config["maxTokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise invalid_request("'inferenceConfig.maxTokens' must be a positive integer.")
        out["max_tokens"] = max_tokens
    for name in ("temperature", "topP"):
        if name in config:
            number = config[name]
            if not isinstance(number, int | float) or isinstance(number, bool):
                raise invalid_request(f"'inferenceConfig.{name}' must be a number.")
            out[_INFERENCE_FIELDS[name]] = number
    if "stopSequences" in config:
        stops = _array(config["stopSequences"], "inferenceConfig.stopSequences")
        out["stop"] = [_string(s, f"inferenceConfig.stopSequences[{i}]") for i, s in enumerate(stops)]
    return out


def _tool_config(value: Any) -> dict[str, Any]:
    config = _object(value, "toolConfig")
    _known_keys(config, {"tools", "toolChoice"}, "toolConfig")
    tools: list[dict[str, Any]] = []
    for i, entry in enumerate(_array(config.get("tools"), "toolConfig.tools")):
        at = f"toolConfig.tools[{i}]"
        kind, item = _union(entry, at)
        if kind == "toolSpec":
            tools.append(_tool(item, f"{at}.toolSpec"))
        elif kind == "cachePoint":
            _mark_cache_point(tools, item, f"{at}.cachePoint")
        else:
            raise unsupported(f"The '{kind}' tool", WHERE)
    if not tools:
        raise invalid_request("'toolConfig.tools' must hold at least one toolSpec.")
    out: dict[str, Any] = {"tools": tools}
    if "toolChoice" in config:
        out["tool_choice"] = _tool_choice(config["toolChoice"])
    return out


def _tool(value: Any, where: str) -> dict[str, Any]:
    spec = _object(value, where)
    _known_keys(spec, {"name", "description", "inputSchema", "strict"}, where)
    function: dict[str, Any] = {"name": _string(spec.get("name"), f"{where}.name")}
    if "description" in spec:
        function["description"] = _string(spec["description"], f"{where}.description")
    kind, schema = _union(spec.get("inputSchema"), f"{where}.inputSchema")
    if kind != "json":
        raise invalid_request(f"'{where}.inputSchema' must hold 'json'.")
    function["parameters"] = _object(schema, f"{where}.inputSchema.json")
    if "strict" in spec:
        if not isinstance(spec["strict"], bool):
            raise invalid_request(f"'{where}.strict' must be a boolean.")
        function["strict"] = spec["strict"]
    return {"type": "function", "function": function}


def _tool_choice(value: Any) -> str | dict[str, Any]:
    kind, item = _union(value, "toolConfig.toolChoice")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "tool":
        name = _string(_object(item, "toolConfig.toolChoice.tool").get("name"), "toolConfig.toolChoice.tool.name")
        return {"type": "function", "function": {"name": name}}
    raise invalid_request("'toolConfig.toolChoice' must hold one of 'auto', 'any', 'tool'.")


def _model_fields(value: Any) -> dict[str, Any]:
    fields = _object(value, "additionalModelRequestFields")
    unknown = sorted(set(fields) - set(_MODEL_FIELDS))
    if unknown:
        raise unsupported(f"additionalModelRequestFields {', '.join(map(repr, unknown))}", WHERE)
    out: dict[str, Any] = {}
    if "top_k" in fields:
        top_k = fields["top_k"]
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise invalid_request("'additionalModelRequestFields.top_k' must be a positive integer.")
        out["top_k"] = top_k
    if "thinking" in fields:
        out["thinking"] = _object(fields["thinking"], "additionalModelRequestFields.thinking")
    if "anthropic_beta" in fields:
        betas = _array(fields["anthropic_beta"], "additionalModelRequestFields.anthropic_beta")
        out["anthropic_beta"] = [
            _string(b, f"additionalModelRequestFields.anthropic_beta[{i}]") for i, b in enumerate(betas)
        ]
    return out


# ---- shape checks: a clear 400 naming the field, never a KeyError ----------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_request(f"{_quoted(where)} must be a JSON object.")
    return value


def _array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid_request(f"{_quoted(where)} must be an array.")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid_request(f"{_quoted(where)} must be a string.")
    return value


def _union(value: Any, where: str) -> tuple[str, Any]:
    """The one member of a Bedrock union (a content block, an image source, a tool choice…)."""
    if not isinstance(value, dict) or len(value) != 1:
        raise invalid_request(f"{_quoted(where)} must be an object with exactly one member.")
    ((kind, item),) = value.items()
    return kind, item


def _known_keys(value: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(value) - known)
    if unknown:
        raise invalid_request(f"Unknown field '{unknown[0]}' in {_quoted(where)}.")


def _quoted(where: str) -> str:
    return where if where.startswith("The ") else f"'{where}'"


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


# ---- reply: canonical -> Converse -------------------------------------------------------------------


class BedrockReply:
    """Answers in Converse's JSON, or as ConverseStream's event stream."""

    stream_media_type = "application/vnd.amazon.eventstream"

    def __init__(self) -> None:
        self._started = time.perf_counter()

    def body(self, completion: dict[str, Any]) -> bytes:
        choices = completion.get("choices") or [{}]
        choice = choices[0]
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        text = text_of(message.get("content"))
        if text:
            content.append({"text": text})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            content.append(
                {
                    "toolUse": {
                        "toolUseId": call.get("id") or new_tool_call_id(),
                        "name": function.get("name", ""),
                        "input": tool_input(function.get("arguments"), function.get("name")),
                    }
                }
            )
        return orjson.dumps(
            {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": stop_reason(choice.get("finish_reason"), choice.get("stop_sequence")),
                "usage": _usage(completion.get("usage")),
                "metrics": {"latencyMs": self._latency_ms()},
            }
        )

    async def stream(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
        """messageStart, the content blocks, messageStop, then metadata once the usage chunk is in."""
        blocks = BlockSequencer()
        usage: dict[str, Any] | None = None
        yield event_frame("messageStart", {"role": "assistant"})
        async for chunk in chunks:
            if chunk.get("usage"):
                usage = chunk["usage"]
            choices = chunk.get("choices") or ()
            if not choices or blocks.finished:  # after the finish only the usage chunk counts
                continue
            choice = choices[0]
            frames = _frames(blocks.feed(choice))
            if blocks.finished:
                frames.append(_message_stop(choice.get("finish_reason"), choice.get("stop_sequence")))
            if frames:
                yield b"".join(frames)
        if not blocks.finished:
            yield b"".join([*_frames(blocks.finish()), _message_stop(None, None)])
        yield event_frame("metadata", {"usage": _usage(usage), "metrics": {"latencyMs": self._latency_ms()}})

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
    return event_type if event_type in _STREAM_EXCEPTIONS else "modelStreamErrorException"


def _usage(canonical: dict[str, Any] | None) -> dict[str, int]:
    usage = TokenUsage.from_canonical(canonical)
    return {
        "inputTokens": usage.input,
        "outputTokens": usage.output,
        "totalTokens": usage.input + usage.cache_read + usage.cache_write + usage.output,
        "cacheReadInputTokens": usage.cache_read,
        "cacheWriteInputTokens": usage.cache_write,
    }


def _frames(events: list[BlockEvent]) -> list[bytes]:
    """ConverseStream's frames for content block events; Bedrock opens a text block with its first delta."""
    frames: list[bytes] = []
    for event in events:
        if isinstance(event, BlockStart) and event.kind == "tool":
            tool_use = {"toolUseId": event.tool_id, "name": event.name}
            frames.append(_block_frame("contentBlockStart", event.index, start={"toolUse": tool_use}))
        elif isinstance(event, BlockDelta):
            delta = {"text": event.data} if event.kind == "text" else {"toolUse": {"input": event.data}}
            frames.append(_block_frame("contentBlockDelta", event.index, delta=delta))
        elif isinstance(event, BlockStop):
            frames.append(_block_frame("contentBlockStop", event.index))
    return frames


def _block_frame(event_type: str, index: int, **fields: Any) -> bytes:
    return event_frame(event_type, {"contentBlockIndex": index, **fields})


def _message_stop(finish_reason: str | None, stop_sequence: str | None) -> bytes:
    return event_frame("messageStop", {"stopReason": stop_reason(finish_reason, stop_sequence)})
