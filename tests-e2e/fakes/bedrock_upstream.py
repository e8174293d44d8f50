"""A fake Bedrock Runtime (Converse and ConverseStream) that validates requests with botocore's service model.

It accepts only what the real service accepts: a Bedrock API key (`Authorization:
Bearer`) or a SigV4 signature it verifies by signing the request again with botocore; a
body that botocore's validator passes for the operation's input shape (no unknown keys,
blobs as base64); and the conversation rules Bedrock enforces (user first, strictly
alternating roles, no blank text, a toolConfig whenever tools appear in the
conversation, and the tool results of a user message answering exactly the toolUse
blocks of the assistant message before it). Errors carry AWS's names in
`x-amzn-errortype`. It answers by the shared scenario (fakes/scenario.py), streams as
`application/vnd.amazon.eventstream`. Every request it accepted is kept in `requests`.
"""

from __future__ import annotations

import hmac
import itertools
import re
from collections.abc import AsyncIterator, MutableSequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import botocore.session
import orjson
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

from fakes.model_lists import foundation_models, inference_profiles
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
from fakes.wire import AwsError, validate_aws_params, verify_sigv4
from orqen_common.formats.bedrock_eventstream import event_frame, exception_frame

_SERVICE_MODEL = botocore.session.get_session().get_service_model("bedrock-runtime")
_INPUT_SHAPES = {
    "converse": _SERVICE_MODEL.operation_model("Converse").input_shape,
    "converse-stream": _SERVICE_MODEL.operation_model("ConverseStream").input_shape,
}
# The raw (still percent-encoded) path: a model id may hold ':' and '/' (an ARN), encoded.
_PATH = re.compile(r"^/model/(?P<model_id>[^/]+)/(?P<operation>converse|converse-stream)$")
_SIGNING_NAME = "bedrock"
_REQUEST_ID = "f4c6e6f0-0000-4000-8000-0000000fa4e0"
_LATENCY_MS = 120
_TOOL_CHOICE = {"auto": "auto", "any": "required"}


@dataclass
class FakeBedrock:
    access_key_id: str
    secret_access_key: str
    bearer_token: str
    # Every request it accepted, for tests to read (`python -m fakes.serve` keeps none).
    requests: MutableSequence[dict[str, Any]] = field(default_factory=list)
    faults: FaultInjector = field(default_factory=FaultInjector, repr=False)
    # The status the control plane's model lists fail with, when set.
    list_error_status: int | None = None

    def app(self) -> Litestar:
        """The runtime (Converse) and the control plane's model lists on one server, as tests point both at it."""

        @post("/model/{model_path:path}", status_code=200)
        async def invoke(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self._invoke(request)

        @get(["/foundation-models", "/inference-profiles"])
        async def lists(request: Request[Any, Any, Any]) -> Response[Any]:
            return await self._list(request)

        return Litestar([invoke, lists], logging_config=None)

    async def _list(self, request: Request[Any, Any, Any]) -> Response[Any]:
        raw_path = request.scope["path"]
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            self._authenticate(request, raw_path, headers, await request.body())
        except AwsError as err:
            return _error(err)
        query = dict(request.query_params)
        self.requests.append({"path": raw_path, "headers": headers, "query": query})
        if self.list_error_status is not None:
            return _status_error(self.list_error_status, None)
        answer = foundation_models(query) if raw_path == "/foundation-models" else inference_profiles(query)
        if isinstance(answer, str):
            return _error(AwsError("ValidationException", 400, answer))
        return Response(answer, media_type="application/json", headers={"x-amzn-requestid": _REQUEST_ID})

    async def _invoke(self, request: Request[Any, Any, Any]) -> Response[Any]:
        raw_path = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
        route = _PATH.match(raw_path)
        if route is None:
            return _error(AwsError("UnknownOperationException", 404, "Unknown operation"))
        model_id, operation = unquote(route["model_id"]), route["operation"]
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            self._authenticate(request, raw_path, headers, body)
            params = _params(body, model_id, operation)
        except AwsError as err:
            return _error(err)
        conversation = _conversation(params, stream=operation == "converse-stream")
        self.requests.append(
            {
                "path": raw_path,
                "model_id": model_id,
                "headers": headers,
                "body": orjson.loads(body),
                "observed": conversation.observed(),
            }
        )
        fault = self.faults.fault_for(conversation.model)
        if fault.delay_seconds:
            await sleep_unless_hung_up(fault.delay_seconds, request.receive)
        if fault.error_status is not None:
            return _status_error(fault.error_status, fault.retry_after)
        headers_out = {"x-amzn-requestid": _REQUEST_ID}
        if fault.drop:
            media_type = "application/vnd.amazon.eventstream" if conversation.stream else "application/json"
            return Stream(dropped_connection(), media_type=media_type, headers=headers_out)
        answer = fault.on(decide(conversation))
        if answer.error_status is not None:
            return _status_error(answer.error_status, RETRY_AFTER_SECONDS)
        if conversation.stream:
            return Stream(_frames(answer), media_type="application/vnd.amazon.eventstream", headers=headers_out)
        return Response(_converse_output(answer), media_type="application/json", headers=headers_out)

    def _authenticate(
        self, request: Request[Any, Any, Any], raw_path: str, headers: dict[str, str], body: bytes
    ) -> None:
        authorization = headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            if not hmac.compare_digest(authorization.removeprefix("Bearer "), self.bearer_token):
                raise AwsError(
                    "AccessDeniedException", 403, "Authentication failed: Please make sure your API Key is valid."
                )
            return
        if not authorization:
            raise AwsError("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
        query = request.scope.get("query_string", b"").decode("latin-1")
        url = f"{request.url.scheme}://{headers.get('host', '')}{raw_path}" + (f"?{query}" if query else "")
        verify_sigv4(
            method=request.method,
            url=url,
            headers=headers,
            body=body,
            secret_keys={self.access_key_id: self.secret_access_key},
            service=_SIGNING_NAME,
        )


# The exceptions Bedrock Runtime documents, by status; others fall back to the generic ones.
_EXCEPTIONS = {
    400: ("ValidationException", "The request is not valid."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "The request took too long to process."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error while processing the request."),
    503: ("ServiceUnavailableException", "The service is unavailable. Try again later."),
}


def _status_error(status: int, retry_after: int | None) -> Response[Any]:
    """An HTTP error as Bedrock sends it; a 429 says when to retry unless `retry_after` is None."""
    code, message = _EXCEPTIONS.get(status) or _EXCEPTIONS[500 if status >= 500 else 400]
    headers = {}
    if status == 429 and retry_after is not None:
        # boto3's retry reads `x-amz-retry-after` (milliseconds); other clients read `retry-after`.
        headers = {"retry-after": str(retry_after), "x-amz-retry-after": str(retry_after * 1000)}
    return _error(AwsError(code, status, message), headers)


def _error(err: AwsError, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"message": err.message},
        status_code=err.status,
        headers={"x-amzn-errortype": err.code, "x-amzn-requestid": _REQUEST_ID, **(headers or {})},
    )


# --- Request ----------------------------------------------------------------------------------


def _params(body: bytes, model_id: str, operation: str) -> dict[str, Any]:
    """The operation's input, validated like the service does; `AwsError` for anything Bedrock refuses."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AwsError("SerializationException", 400, "The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise AwsError("SerializationException", 400, "The request body must be a JSON object.")
    shape = _INPUT_SHAPES[operation]
    # Members bound to the URI (modelId) do not belong in the body.
    in_uri = [key for key in payload if key in shape.members and shape.members[key].serialization.get("location")]
    if in_uri:
        raise AwsError("ValidationException", 400, f"Unknown parameter in input: {in_uri[0]}")
    params = validate_aws_params(shape, {**payload, "modelId": model_id})
    _check_messages(params)
    return params


def _check_messages(params: dict[str, Any]) -> None:
    """The conversation rules Bedrock enforces beyond the input shape."""
    messages = params["messages"]
    if messages and messages[0]["role"] != "user":
        raise _invalid(
            "A conversation must start with a user message. "
            "Try again with a conversation that starts with a user message."
        )
    for before, message in itertools.pairwise(messages):
        if before["role"] == message["role"]:
            raise _invalid(
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                "alternates between user and assistant roles and try again."
            )
    blocks = [(i, j, block) for i, m in enumerate(messages) for j, block in enumerate(m["content"])]
    for i, j, block in blocks:
        if "text" in block and not block["text"].strip():
            raise _invalid(
                f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. "
                "Add text to the text field, and try again."
            )
    if "toolConfig" not in params and any("toolUse" in b or "toolResult" in b for _, _, b in blocks):
        raise _invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    called: list[str] = []  # the toolUse ids of the previous (assistant) message
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            called = [b["toolUse"]["toolUseId"] for b in message["content"] if "toolUse" in b]
            continue
        answered = [b["toolResult"]["toolUseId"] for b in message["content"] if "toolResult" in b]
        if len(answered) > len(called):
            raise _invalid(
                f"The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks "
                "of previous turn."
            )
        missing = [tool_id for tool_id in called if tool_id not in answered]
        if missing:
            raise _invalid(
                f"Expected toolResult blocks at messages.{i}.content for the following Ids: {', '.join(missing)}"
            )
        called = []


def _invalid(message: str) -> AwsError:
    return AwsError("ValidationException", 400, message)


def _conversation(params: dict[str, Any], stream: bool) -> Conversation:
    tool_config = params.get("toolConfig") or {}
    inference = params.get("inferenceConfig") or {}
    return Conversation(
        model=params["modelId"],
        turns=[_turn(message) for message in params["messages"]],
        system=[block["text"] for block in params.get("system") or [] if "text" in block],
        tools=[tool["toolSpec"]["name"] for tool in tool_config.get("tools") or [] if "toolSpec" in tool],
        tool_choice=_tool_choice(tool_config.get("toolChoice")),
        max_tokens=inference.get("maxTokens"),
        temperature=inference.get("temperature"),
        top_p=inference.get("topP"),
        stop=list(inference.get("stopSequences") or []),
        stream=stream,
    )


def _turn(message: dict[str, Any]) -> Turn:
    turn = Turn(message["role"])
    for block in message["content"]:
        if "text" in block:
            turn.texts.append(block["text"])
        elif "image" in block:
            source = block["image"]["source"]
            if "bytes" in source:  # decoded from base64 by validation
                turn.images.append({"media_type": f"image/{block['image']['format']}", "size": len(source["bytes"])})
            else:
                turn.images.append({"url": source["s3Location"]["uri"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            turn.tool_calls.append({"id": use["toolUseId"], "name": use["name"], "input": use["input"]})
        elif "toolResult" in block:
            result = block["toolResult"]
            content = " ".join(_result_text(item) for item in result["content"])
            is_error = result.get("status") == "error"
            turn.tool_results.append({"id": result["toolUseId"], "content": content, "is_error": is_error})
    return turn


def _result_text(item: dict[str, Any]) -> str:
    if "text" in item:
        return str(item["text"])
    if "json" in item:
        return orjson.dumps(item["json"]).decode()
    return ""


def _tool_choice(choice: dict[str, Any] | None) -> str | None:
    if not choice:
        return None
    if "tool" in choice:
        return f"tool:{choice['tool']['name']}"
    return _TOOL_CHOICE[next(iter(choice))]


# --- Answer -----------------------------------------------------------------------------------


def _tool_use_id(index: int) -> str:
    return f"tooluse_{index}"


def _usage(answer: Answer) -> dict[str, int]:
    usage = answer.usage
    return {
        "inputTokens": usage.input,
        "outputTokens": usage.output,
        "totalTokens": usage.input + usage.cache_read + usage.cache_write + usage.output,
        "cacheReadInputTokens": usage.cache_read,
        "cacheWriteInputTokens": usage.cache_write,
    }


def _converse_output(answer: Answer) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": answer.text}] if answer.text else []
    content += [
        {"toolUse": {"toolUseId": _tool_use_id(i), "name": call.name, "input": call.input}}
        for i, call in enumerate(answer.tool_calls)
    ]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": answer.stop_reason,
        "usage": _usage(answer),
        "metrics": {"latencyMs": _LATENCY_MS},
    }


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    """One event frame; the JSON is the fake's own, never Orqen's types, so it checks them."""
    return event_frame(event_type, orjson.dumps(payload))


async def _frames(answer: Answer) -> AsyncIterator[bytes]:
    """ConverseStream's events. Text needs no contentBlockStart; a toolUse block does."""
    yield _event("messageStart", {"role": "assistant"})
    try:
        for fragment in streamed_text(answer):
            yield _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": fragment}})
    except InStreamError:
        yield exception_frame("throttlingException", "Too many tokens, please wait before trying again.")
        return
    if answer.text:
        yield _event("contentBlockStop", {"contentBlockIndex": 0})
    first_tool_index = 1 if answer.text else 0
    for offset, call in enumerate(answer.tool_calls):
        index = first_tool_index + offset
        start = {"toolUse": {"toolUseId": _tool_use_id(offset), "name": call.name}}
        yield _event("contentBlockStart", {"contentBlockIndex": index, "start": start})
        for fragment in json_fragments(call.input):
            delta = {"toolUse": {"input": fragment}}
            yield _event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
        yield _event("contentBlockStop", {"contentBlockIndex": index})
    yield _event("messageStop", {"stopReason": answer.stop_reason})
    yield _event("metadata", {"usage": _usage(answer), "metrics": {"latencyMs": _LATENCY_MS}})
