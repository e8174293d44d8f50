"""A fake Anthropic Messages API that validates requests with the anthropic SDK's own types.

It accepts only what the real API accepts: the key (as `x-api-key`, or as `Authorization:
Bearer`, which is how the current SDK sends it), a known `anthropic-version`, the SDK's
request types with no unknown fields at any depth, and the conversation rules the API
enforces (user first, unique tool_use ids, every tool_result first in the user message
right after the assistant message whose tool_use it answers, and every tool_use
answered). It answers by the shared scenario (fakes/scenario.py) with a real `Message`
or the real event stream. Every request it accepted is kept in `requests` for tests;
the `anthropic-beta` header is in its `headers`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import AsyncIterator, MutableSequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from anthropic.types import Message, TextBlock, ToolUseBlock, Usage
from anthropic.types import message_create_params as params
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream
from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from fakes.model_lists import anthropic_page
from fakes.scenario import (
    RETRY_AFTER_SECONDS,
    Answer,
    Conversation,
    FaultInjector,
    InStreamError,
    Turn,
    decide,
    dropped_connection,
    json_fragments,
    sleep_unless_hung_up,
    streamed_text,
)
from fakes.wire import sse, strict_adapter, validate_typed_dict

_NON_STREAMING = strict_adapter(params.MessageCreateParamsNonStreaming)
_STREAMING = strict_adapter(params.MessageCreateParamsStreaming)
# The versions the API knows. From 2026-10-21 (the one the installed SDK sends) the
# sampling parameters are gone from the API; older versions still take them.
_API_VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
_SAMPLING_REMOVED_IN = "2026-10-21"
_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
_REQUEST_ID = "req_fake"


class _Sampling(TypedDict, total=False):
    """The sampling parameters of the API versions before 2026-10-21, with their documented ranges."""

    temperature: Annotated[float, Field(ge=0, le=1)]
    top_p: Annotated[float, Field(ge=0, le=1)]
    top_k: Annotated[int, Field(ge=0)]


_SAMPLING = TypeAdapter(_Sampling)


@dataclass
class FakeAnthropic:
    api_key: str
    # Every request it accepted, for tests to read (`python -m fakes.serve` keeps none).
    requests: MutableSequence[dict[str, Any]] = field(default_factory=list)
    faults: FaultInjector = field(default_factory=FaultInjector, repr=False)
    # The status GET /v1/models fails with, when set.
    list_error_status: int | None = None

    def app(self) -> Litestar:
        @post("/v1/messages", status_code=200)
        async def messages(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self._messages(request)

        @get("/v1/models")
        async def models(request: Request[Any, Any, Any]) -> Response[Any]:
            return self._models(request)

        return Litestar([messages, models], logging_config=None)

    def _models(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if not self._authenticated(request):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        query = dict(request.query_params)
        self.requests.append({"path": request.url.path, "headers": dict(request.headers), "query": query})
        if self.list_error_status is not None:
            return _status_error(self.list_error_status, None)
        page = anthropic_page(query)
        if isinstance(page, str):
            return _error(400, "invalid_request_error", page)
        return Response(page, media_type="application/json", headers={"request-id": _REQUEST_ID})

    def _authenticated(self, request: Request[Any, Any, Any]) -> bool:
        """The key as `x-api-key`, or as `Authorization: Bearer`, which is how the current SDK sends it."""
        key = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        if key is None and authorization.startswith("Bearer "):
            key = authorization.removeprefix("Bearer ")
        return key is not None and hmac.compare_digest(key, self.api_key)

    async def _messages(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if not self._authenticated(request):
            return _error(401, "authentication_error", "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if version not in _API_VERSIONS:
            return _error(400, "invalid_request_error", f"anthropic-version: invalid version {version!r}")
        try:
            body = orjson.loads(await request.body())
            conversation = _conversation(body, version)
        except orjson.JSONDecodeError:
            return _error(400, "invalid_request_error", "The request body is not valid JSON.")
        except _InvalidRequestError as bad:
            return _error(400, "invalid_request_error", str(bad))
        observed = conversation.observed()
        self.requests.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body, "observed": observed}
        )
        fault = self.faults.fault_for(conversation.model)
        if fault.delay_seconds:
            await sleep_unless_hung_up(fault.delay_seconds, request.receive)
        if fault.error_status is not None:
            return _status_error(fault.error_status, fault.retry_after)
        headers = {"request-id": _REQUEST_ID}
        if fault.drop:
            media_type = "text/event-stream" if conversation.stream else "application/json"
            return Stream(dropped_connection(), media_type=media_type, headers=headers)
        answer = fault.on(decide(conversation))
        if answer.error_status is not None:
            return _status_error(answer.error_status, RETRY_AFTER_SECONDS)
        if conversation.stream:
            return Stream(_events(conversation.model, answer), media_type="text/event-stream", headers=headers)
        return Response(_message(conversation.model, answer), media_type="application/json", headers=headers)


class _InvalidRequestError(Exception):
    pass


# The error types of the statuses the Messages API documents.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _status_error(status: int, retry_after: int | None) -> Response[Any]:
    """An HTTP error as Anthropic sends it; a 429 says when to retry unless `retry_after` is None."""
    if status == 429:
        message = "Number of request tokens has exceeded your per-minute rate limit."
        headers = {} if retry_after is None else {"retry-after": str(retry_after)}
        return _error(429, "rate_limit_error", message, headers)
    if status == 529:
        return _error(529, "overloaded_error", "Overloaded")
    if status >= 500:
        return _error(status, _ERROR_TYPES.get(status, "api_error"), "Internal server error")
    type_ = _ERROR_TYPES.get(status, "invalid_request_error")
    return _error(status, type_, f"The request failed with status {status}.")


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": _REQUEST_ID}
    return Response(body, status_code=status, headers={"request-id": _REQUEST_ID, **(headers or {})})


# --- Request ----------------------------------------------------------------------------------


def _conversation(body: Any, version: str) -> Conversation:
    """The validated request as a scenario `Conversation`; `_InvalidRequestError` for anything Anthropic refuses."""
    if not isinstance(body, dict):
        raise _InvalidRequestError("The request body must be a JSON object.")
    sampling: dict[str, Any] = {}
    if version < _SAMPLING_REMOVED_IN:
        sampling = {k: body[k] for k in ("temperature", "top_p", "top_k") if k in body}
        try:
            _SAMPLING.validate_python(sampling)
        except ValidationError as err:
            raise _InvalidRequestError(str(err)) from None
    # Newer versions leave sampling fields in, for the SDK type to refuse as unknown.
    rest = {k: v for k, v in body.items() if k not in sampling}
    problem = validate_typed_dict(_STREAMING if body.get("stream") is True else _NON_STREAMING, rest)
    if problem is not None:
        raise _InvalidRequestError(problem)
    _check_messages(body["messages"])
    system = _texts(body.get("system"))
    turns: list[Turn] = []
    for index, message in enumerate(body["messages"]):
        if message["role"] == "system":
            system += _texts(message["content"])
        else:
            turns.append(_turn(message, index))
    return Conversation(
        model=body["model"],
        turns=turns,
        system=system,
        tools=[t["name"] for t in body.get("tools") or [] if "name" in t],
        tool_choice=_tool_choice(body.get("tool_choice")),
        max_tokens=body["max_tokens"],
        temperature=sampling.get("temperature"),
        top_p=sampling.get("top_p"),
        stop=list(body.get("stop_sequences") or []),
        stream=bool(body.get("stream")),
    )


def _check_messages(messages: list[dict[str, Any]]) -> None:
    """The conversation rules the API enforces beyond the request's types."""
    dialogue = [(i, m) for i, m in enumerate(messages) if m["role"] != "system"]
    if dialogue and dialogue[0][1]["role"] != "user":
        raise _InvalidRequestError('messages: first message must use the "user" role')
    used_ids: set[str] = set()
    called: list[str] = []  # the tool_use ids of the message just before, if it was the assistant's
    for index, message in dialogue:
        blocks = _blocks(message)
        if message["role"] == "assistant":
            if called:
                raise _unanswered(index - 1, called)
            called = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            if len(set(called)) != len(called) or used_ids & set(called):
                raise _InvalidRequestError(f"messages.{index}.content: `tool_use` ids must be unique")
            used_ids.update(called)
            continue
        kinds = [b.get("type") for b in blocks]
        answered = [b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"]
        if "tool_result" in kinds and kinds[: len(answered)] != ["tool_result"] * len(answered):
            raise _InvalidRequestError(
                f"messages.{index}.content: `tool_result` blocks must come first in the user message, "
                "before any other content."
            )
        unexpected = [i for i in answered if i not in called]
        if unexpected:
            raise _InvalidRequestError(
                f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{', '.join(unexpected)}. Each `tool_result` block must have a corresponding `tool_use` block "
                "in the previous message."
            )
        missing = [i for i in called if i not in answered]
        if missing:
            raise _unanswered(index - 1, missing)
        called = []


def _unanswered(index: int, ids: list[str]) -> _InvalidRequestError:
    return _InvalidRequestError(
        f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
        f"{', '.join(ids)}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
    )


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _texts(content: Any) -> list[str]:
    """The text of a string or of a list of blocks, one entry per non-empty text."""
    if isinstance(content, str):
        return [content] if content else []
    return [b["text"] for b in content or [] if b.get("type") == "text" and b["text"]]


def _turn(message: dict[str, Any], index: int) -> Turn:
    turn = Turn(message["role"], texts=_texts(message["content"]))
    for block_index, block in enumerate(_blocks(message)):
        kind = block.get("type")
        if kind == "image":
            turn.images.append(_image(block["source"], f"messages.{index}.content.{block_index}"))
        elif kind == "tool_use":
            turn.tool_calls.append({"id": block["id"], "name": block["name"], "input": block["input"]})
        elif kind == "tool_result":
            result = {"id": block["tool_use_id"], "content": " ".join(_texts(block.get("content")))}
            turn.tool_results.append({**result, "is_error": bool(block.get("is_error"))})
    return turn


def _image(source: dict[str, Any], where: str) -> dict[str, Any]:
    if source["type"] == "url":
        return {"url": source["url"]}
    if source["type"] == "file":
        return {"file_id": source["file_id"]}
    try:
        return {"media_type": source["media_type"], "size": len(base64.b64decode(source["data"], validate=True))}
    except (binascii.Error, ValueError):
        raise _InvalidRequestError(f"{where}.source.data: invalid base64 image data") from None


def _tool_choice(choice: dict[str, Any] | None) -> str | None:
    if choice is None:
        return None
    if choice["type"] == "tool":
        return f"tool:{choice['name']}"
    return _TOOL_CHOICE[choice["type"]]


# --- Answer -----------------------------------------------------------------------------------


def _tool_use_id(index: int) -> str:
    return f"toolu_{index}"


def _message(model: str, answer: Answer) -> dict[str, Any]:
    content: list[TextBlock | ToolUseBlock] = [TextBlock(type="text", text=answer.text)] if answer.text else []
    content += [
        ToolUseBlock(type="tool_use", id=_tool_use_id(i), name=call.name, input=call.input)
        for i, call in enumerate(answer.tool_calls)
    ]
    return Message(
        id="msg_fake",
        type="message",
        role="assistant",
        model=model,
        content=list(content),
        stop_reason=answer.stop_reason,
        stop_sequence=answer.stop_sequence,
        usage=_usage(answer, output_tokens=answer.usage.output),
    ).model_dump(mode="json")


def _usage(answer: Answer, output_tokens: int) -> Usage:
    return Usage(
        input_tokens=answer.usage.input,
        cache_read_input_tokens=answer.usage.cache_read,
        cache_creation_input_tokens=answer.usage.cache_write,
        output_tokens=output_tokens,
    )


async def _events(model: str, answer: Answer) -> AsyncIterator[bytes]:
    """The Messages API event stream: message_start, ping, content blocks, message_delta, message_stop."""
    # message_start carries input and cache usage; output_tokens is final only in message_delta.
    start = Message(
        id="msg_fake",
        type="message",
        role="assistant",
        model=model,
        content=[],
        stop_reason=None,
        stop_sequence=None,
        usage=_usage(answer, output_tokens=1),
    )
    yield _event({"type": "message_start", "message": start.model_dump(mode="json")})
    yield _event({"type": "ping"})
    if answer.text:
        yield _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    try:
        for fragment in streamed_text(answer):
            yield _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": fragment}})
    except InStreamError:
        yield _event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        return
    if answer.text:
        yield _event({"type": "content_block_stop", "index": 0})
    first_tool_index = 1 if answer.text else 0
    for offset, call in enumerate(answer.tool_calls):
        index = first_tool_index + offset
        block = {"type": "tool_use", "id": _tool_use_id(offset), "name": call.name, "input": {}}
        yield _event({"type": "content_block_start", "index": index, "content_block": block})
        for fragment in json_fragments(call.input):
            delta = {"type": "input_json_delta", "partial_json": fragment}
            yield _event({"type": "content_block_delta", "index": index, "delta": delta})
        yield _event({"type": "content_block_stop", "index": index})
    stop = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
    yield _event({"type": "message_delta", "delta": stop, "usage": {"output_tokens": answer.usage.output}})
    yield _event({"type": "message_stop"})


def _event(data: dict[str, Any]) -> bytes:
    return sse(data, event=data["type"])
