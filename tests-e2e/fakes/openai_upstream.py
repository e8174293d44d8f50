"""A fake OpenAI Chat Completions endpoint that validates requests with the openai SDK's own types.

The stateless families (embeddings, images, audio, responses, ...) are in fakes/openai_families.py.

It accepts only what the real API accepts: the SDK's request types with no unknown
fields at any depth, a Bearer key, and tool messages that answer the tool calls of the
assistant message before them. It answers by the shared scenario (fakes/scenario.py).
Every request it accepted is kept in `requests` for tests.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, MutableSequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream
from openai.types.chat import completion_create_params as params

from fakes.model_lists import OPENAI_MODELS, openai_list
from fakes.openai_families import FamilyRoutes
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
from orqen_common.canonical import TokenUsage, finish_reason, parse_data_url
from orqen_common.errors import OrqenError

_NON_STREAMING = strict_adapter(params.CompletionCreateParamsNonStreaming)
_STREAMING = strict_adapter(params.CompletionCreateParamsStreaming)
_COMPLETION_ID = "chatcmpl-fake"


@dataclass
class FakeOpenAI:
    api_key: str
    # Every request it accepted, for tests to read (`python -m fakes.serve` keeps none).
    requests: MutableSequence[dict[str, Any]] = field(default_factory=list)
    faults: FaultInjector = field(default_factory=FaultInjector, repr=False)
    # What GET /v1/models lists, and the status it fails with instead when set.
    models: tuple[str, ...] = OPENAI_MODELS
    list_error_status: int | None = None

    def app(self) -> Litestar:
        @post("/v1/chat/completions", status_code=200)
        async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self._chat(request)

        @get("/v1/models")
        async def models(request: Request[Any, Any, Any]) -> Response[Any]:
            return self._models(request)

        families = FamilyRoutes(self.api_key, self.requests, self.faults).handlers()
        return Litestar([chat, models, *families], logging_config=None)

    def _models(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        self.requests.append({"path": request.url.path, "headers": dict(request.headers), "body": None})
        if self.list_error_status is not None:
            return _status_error(self.list_error_status, None)
        return Response(openai_list(self.models), media_type="application/json")

    async def _chat(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return _error(415, "Content-Type must be application/json", "invalid_request_error")
        try:
            body = orjson.loads(await request.body())
            conversation = _conversation(body)
        except _InvalidRequestError as bad:
            return _error(400, bad.message, "invalid_request_error", param=bad.param)
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        observed = conversation.observed()
        self.requests.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body, "observed": observed}
        )
        fault = self.faults.fault_for(conversation.model)
        if fault.delay_seconds:
            await sleep_unless_hung_up(fault.delay_seconds, request.receive)
        if fault.error_status is not None:
            return _status_error(fault.error_status, fault.retry_after)
        if fault.drop:
            media_type = "text/event-stream" if conversation.stream else "application/json"
            return Stream(dropped_connection(), media_type=media_type)
        answer = fault.on(decide(conversation))
        if answer.error_status is not None:
            return _status_error(answer.error_status, RETRY_AFTER_SECONDS)
        if conversation.stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return Stream(_chunks(conversation.model, answer, include_usage), media_type="text/event-stream")
        return Response(_completion(conversation.model, answer), media_type="application/json")


class _InvalidRequestError(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def _status_error(status: int, retry_after: int | None) -> Response[Any]:
    """An HTTP error as OpenAI sends it; a 429 says when to retry unless `retry_after` is None."""
    if status == 429:
        headers = {} if retry_after is None else {"retry-after": str(retry_after)}
        return _error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", headers=headers)
    if status >= 500:
        return _error(status, "The server had an error while processing your request.", "server_error")
    return _error(status, f"The request failed with status {status}.", "invalid_request_error")


def _error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Response(body, status_code=status, headers=headers or {})


# --- Request ----------------------------------------------------------------------------------


def _conversation(body: Any) -> Conversation:
    """The validated request as a scenario `Conversation`; `_InvalidRequestError` for anything OpenAI refuses."""
    adapter = _STREAMING if isinstance(body, dict) and body.get("stream") is True else _NON_STREAMING
    problem = validate_typed_dict(adapter, body)
    if problem is not None:
        raise _InvalidRequestError(f"Invalid request: {problem}")
    _check_tool_messages(body["messages"])
    system: list[str] = []
    turns: list[Turn] = []
    for index, message in enumerate(body["messages"]):
        if message["role"] in ("system", "developer"):
            system.append(_text(message["content"]))
        else:
            turns.append(_turn(message, index))
    stop = body.get("stop")
    tool_choice = body.get("tool_choice")
    return Conversation(
        model=body["model"],
        turns=turns,
        system=system,
        tools=[t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"],
        tool_choice=f"tool:{tool_choice['function']['name']}" if isinstance(tool_choice, dict) else tool_choice,
        max_tokens=body.get("max_completion_tokens", body.get("max_tokens")),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=[stop] if isinstance(stop, str) else list(stop or []),
        stream=bool(body.get("stream")),
    )


def _check_tool_messages(messages: list[dict[str, Any]]) -> None:
    """OpenAI's pairing rule: tool messages answer, in full, the tool calls of the assistant message before them."""
    pending: set[str] | None = None  # ids the last assistant message called that are still unanswered
    calling_index = 0
    for index, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            if pending is None:
                raise _InvalidRequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                    "with 'tool_calls'.",
                    f"messages.[{index}].role",
                )
            if message["tool_call_id"] not in pending:
                raise _InvalidRequestError(
                    f"Invalid parameter: 'tool_call_id' of '{message['tool_call_id']}' not found in 'tool_calls' "
                    "of previous message.",
                    f"messages.[{index}].tool_call_id",
                )
            pending.discard(message["tool_call_id"])
            continue
        if pending:
            raise _unanswered(calling_index, pending)
        calls = message.get("tool_calls") if role == "assistant" else None
        pending = {c["id"] for c in calls} if calls else None
        calling_index = index
    if pending:
        raise _unanswered(calling_index, pending)


def _unanswered(index: int, ids: set[str]) -> _InvalidRequestError:
    return _InvalidRequestError(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(sorted(ids))}",
        f"messages.[{index}].role",
    )


def _turn(message: dict[str, Any], index: int) -> Turn:
    turn = Turn(message["role"])
    content = message.get("content")
    if message["role"] == "tool":
        turn.tool_results.append({"id": message["tool_call_id"], "content": _text(content), "is_error": False})
        return turn
    if text := _text(content):
        turn.texts.append(text)
    if isinstance(content, list):
        for part_index, part in enumerate(content):
            if part.get("type") == "image_url":
                turn.images.append(_image(part["image_url"]["url"], f"messages.[{index}].content.[{part_index}]"))
    for call in message.get("tool_calls") or []:
        if call.get("type") == "function":
            function = call["function"]
            turn.tool_calls.append({"id": call["id"], "name": function["name"], "input": _arguments(function)})
    return turn


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if p.get("type") == "text")
    return ""


def _image(url: str, param: str) -> dict[str, Any]:
    try:
        data_url = parse_data_url(url)
    except OrqenError as err:
        raise _InvalidRequestError(f"Invalid image: {err.message}", param) from None
    if data_url is None:
        return {"url": url}
    media_type, data = data_url
    return {"media_type": media_type, "size": len(base64.b64decode(data))}


def _arguments(function: dict[str, Any]) -> Any:
    """A call's arguments as an object; OpenAI itself does not parse them, so neither does it refuse bad JSON."""
    try:
        return orjson.loads(function["arguments"])
    except orjson.JSONDecodeError:
        return function["arguments"]


# --- Answer -----------------------------------------------------------------------------------


def _call_id(index: int) -> str:
    return f"call_{index}"


def _tool_calls(answer: Answer) -> list[dict[str, Any]]:
    return [
        {
            "id": _call_id(i),
            "type": "function",
            "function": {"name": call.name, "arguments": orjson.dumps(call.input).decode()},
        }
        for i, call in enumerate(answer.tool_calls)
    ]


def _completion(model: str, answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = _tool_calls(answer)
    return {
        "id": _COMPLETION_ID,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason(answer.stop_reason), "logprobs": None}
        ],
        "usage": _usage(answer.usage),
    }


async def _chunks(model: str, answer: Answer, include_usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse(_chunk_envelope(model, created, [choice]))

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    try:
        for fragment in streamed_text(answer):
            yield chunk({"content": fragment})
    except InStreamError:
        error = {"message": "The server had an error while processing your request.", "type": "server_error"}
        yield sse({"error": {**error, "param": None, "code": None}})
        return
    for index, call in enumerate(answer.tool_calls):
        opening = {"name": call.name, "arguments": ""}
        yield chunk({"tool_calls": [{"index": index, "id": _call_id(index), "type": "function", "function": opening}]})
        for fragment in json_fragments(call.input):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    yield chunk({}, finish_reason(answer.stop_reason))
    if include_usage:
        yield sse({**_chunk_envelope(model, created, []), "usage": _usage(answer.usage)})
    yield b"data: [DONE]\n\n"


def _chunk_envelope(model: str, created: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": _COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }


def _usage(usage: TokenUsage) -> dict[str, Any]:
    """OpenAI's usage object: prompt_tokens counts cache reads (and writes) too."""
    prompt = usage.input + usage.cache_read + usage.cache_write
    details = {"cached_tokens": usage.cache_read}
    if usage.cache_write:
        details["cache_creation_tokens"] = usage.cache_write
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output,
        "total_tokens": prompt + usage.output,
        "prompt_tokens_details": details,
    }
