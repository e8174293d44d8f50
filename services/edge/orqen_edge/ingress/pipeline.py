"""The path of one canonical chat request, whatever SDK it came from.

read -> the ingress translator (SDK shape -> canonical) -> optimizer (fail open) ->
dispatch -> the ingress translator again (canonical -> SDK shape) -> the request event.
`serve_chat` is that path; each ingress module only supplies its translator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from litestar import Request, Response
from litestar.response import Stream
from msgspec.structs import replace
from prometheus_client import Counter

from orqen.v1 import common_pb2, dispatch_pb2, events_pb2, optimizer_pb2
from orqen_common.caller_text import checked_text
from orqen_common.context import Principal
from orqen_common.errors import OrqenError, invalid_request
from orqen_common.events import REQUEST_COMPLETED
from orqen_common.formats.openai import (
    CREDENTIAL_FIELDS,
    AnyTool,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Tool,
    chunk_decoder,
    completion_decoder,
    decode_request,
    encode,
    encode_request,
    tool_name,
)
from orqen_edge.budgets import admit_call, call_cost_usd
from orqen_edge.cache_control import CACHE_HEADER, CACHE_TTL_HEADER, cache_headers, requested_cache
from orqen_edge.caller_text import checked_header_text, checked_model, header_safe
from orqen_edge.completion_event import publish_after_last_byte
from orqen_edge.rate_limit import Admission
from orqen_edge.request_body import read_body
from orqen_edge.runtime import Runtime

log = structlog.get_logger(__name__)

OPTIMIZER_FAIL_OPEN = Counter(
    "orqen_optimizer_fail_open_total", "Requests forwarded unoptimized because the plan failed.", ["reason"]
)

SESSION_HEADER = "x-orqen-session-id"
# How long the last byte of an answer may wait for JetStream to store its request event (about a
# millisecond when NATS is healthy; the bound is for a NATS that just froze).
STORE_WAIT_SECONDS = 2.0
PROVIDER_KEY_HEADER = "x-orqen-provider-key"
# The ingress whose request body is already the canonical request (OpenAI's shape is Orqen's).
CANONICAL_INGRESS = "openai"
# Every provider refuses longer tool names (OpenAI, Anthropic and Bedrock allow 64 characters);
# the bound keeps a caller's names from swelling what the edge records and forwards.
MAX_TOOL_NAME_CHARS = 256
# Bytes of tool names one list of the request event may hold (offered, forwarded, called): the
# three lists and the rest of the event stay well inside one NATS message.
RECORDED_NAMES_BYTES = 128 * 1024


class Reply(Protocol):
    """How one ingress format answers its caller, built from the canonical answer."""

    stream_media_type: str

    def body(self, completion: ChatCompletion) -> bytes:
        """The whole non-streaming response body."""
        ...

    def stream(self, batches: AsyncIterator[list[ChatCompletionChunk]]) -> AsyncIterator[bytes]:
        """The encoded stream, one piece per batch of chunks (dispatch sends those ready together
        together, and they are written to the client in one go); the last chunk is the canonical
        usage chunk."""
        ...

    def stream_error(self, err: OrqenError) -> bytes:
        """The event that reports a failure after the first byte was sent."""
        ...


# Turns a request body (JSON bytes, content type already checked) into the canonical
# request and the Reply that answers it; a 400 in the caller's terms for what does not fit.
Translate = Callable[[bytes], tuple[ChatRequest, Reply]]


@dataclass
class ChatCall:
    """One chat request on its way through the edge, and what is learned about it."""

    runtime: Runtime
    context: common_pb2.RequestContext
    model_requested: str
    stream: bool
    started: float = field(default_factory=time.perf_counter)
    plan_stats: optimizer_pb2.PlanStats = field(default_factory=optimizer_pb2.PlanStats)
    trace: optimizer_pb2.RoutingTrace = field(default_factory=optimizer_pb2.RoutingTrace)
    summary: dispatch_pb2.DispatchSummary = field(default_factory=dispatch_pb2.DispatchSummary)
    credentials: dict[str, str] = field(default_factory=dict)
    admission: Admission | None = None  # what the request's limits admitted, charged when it ends
    # Tools the model called in its answer: on A/B control traffic they measure the router's recall.
    tools_called: list[str] = field(default_factory=list)
    # Names of the tools the caller offered and of those that went upstream (tool health).
    tools_offered: list[str] = field(default_factory=list)
    tools_forwarded: list[str] = field(default_factory=list)
    canonical_body: bytes | None = None  # see `canonical_body`
    # The response cache as the request asks for it (orqen_edge.cache_control): "" and 0 for the account's.
    cache_mode: str = ""
    cache_ttl_seconds: int = 0
    recorded: bool = False

    def record(self, status: int, error: str = "") -> asyncio.Future[None] | None:
        """Publish the request event once (after the last byte, or on failure); None when already published.

        The future is done once JetStream has stored the event (orqen_common.events.EventPublisher).
        """
        if self.recorded:
            return None
        self.recorded = True
        created = Timestamp()
        created.GetCurrentTime()
        event = events_pb2.RequestCompleted(
            context=self.context,
            created_at=created,
            model_requested=self.model_requested,
            status=status,
            error=error,
            stream=self.stream,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            dispatch=self.summary,
            plan=self.plan_stats,
            trace=self.trace,
            tools_called=recorded_names(self.tools_called),
            tools_offered=recorded_names(self.tools_offered),
            tools_forwarded=recorded_names(self.tools_forwarded),
            budget_warning=self.admission.warning if self.admission else "",
        )
        return self.runtime.publisher.publish(REQUEST_COMPLETED, event.SerializeToString(), self.context.request_id)

    async def record_stored(self, status: int) -> None:
        """Publish the request event and wait (bounded) until JetStream has it, before the answer ends.

        A client that got a whole answer then finds it in the request log even if the edge is
        killed the moment after; while NATS is failing the event is only buffered (no wait).
        """
        event = self.record(status)
        if event is not None:
            await self.runtime.publisher.stored(event, within=STORE_WAIT_SECONDS)

    def dispatch_failed(self, err: OrqenError) -> None:
        """Keep the summary dispatch sent with its error (every attempt made) for the request event."""
        if err.detail is not None:
            self.summary = dispatch_pb2.DispatchSummary.FromString(err.detail)

    @property
    def charges(self) -> bool:
        """Whether the call's end has anything to spend from its limits (an account without any: no)."""
        return self.admission is not None and not self.admission.settled

    async def charge_tokens(self) -> None:
        """Spend the tokens and cost the call used from its limits and budgets; never fails the request."""
        if not self.charges:
            return
        usage = self.summary.usage
        tokens = usage.input_tokens + usage.output_tokens
        spend = call_cost_usd(self.runtime.prices, self.summary.provider, self.summary.model, usage)
        await self.runtime.rate_limiter.charge(self.admission, tokens, spend)

    def headers(self) -> dict[str, str]:
        """The x-orqen-* headers of what the optimizer and the response cache did, and the x-ratelimit-* ones."""
        limits = self.admission.headers if self.admission else {}
        return {**limits, **orqen_headers(self.summary.model, self.plan_stats), **cache_headers(self.summary.cache)}


def orqen_headers(model: str, stats: optimizer_pb2.PlanStats) -> dict[str, str]:
    """The x-orqen-* headers of a request answered by `model` after a plan with `stats`.

    Every value is made header-safe here: the model name comes from the provider's answer.
    The dashboard shows a logged request's headers with this function too.
    """
    out: dict[str, str] = {}
    if model:
        out["x-orqen-model"] = model
    if stats.tools_input:
        out["x-orqen-tools-input"] = str(stats.tools_input)
        out["x-orqen-tools-output"] = str(stats.tools_output)
        out["x-orqen-prune-ratio"] = f"{stats.tools_output}/{stats.tools_input}"
        if stats.routing:  # "passthrough" too: whoever reads the header learns nothing was pruned, and why not
            out["x-orqen-routing"] = stats.routing
    if stats.context_compressed:
        out["x-orqen-ctx-tokens-in"] = str(stats.ctx_tokens_in)
        out["x-orqen-ctx-tokens-out"] = str(stats.ctx_tokens_out)
        out["x-orqen-ctx-tokens-saved"] = str(stats.ctx_tokens_in - stats.ctx_tokens_out)
    return {name: header_safe(value) for name, value in out.items()}


async def serve_chat(
    request: Request[Any, Any, Any], runtime: Runtime, principal: Principal, ingress: str, translate: Translate
) -> Response[Any]:
    """Answer one chat request from any SDK; the request event is published exactly once."""
    call = new_call(runtime, principal, request.state.request_id, ingress, request.headers.get(SESSION_HEADER, ""))
    try:
        raw = await read_body(request)
        chat, reply = translate(raw)
        validate_chat(chat)
        call.model_requested, call.stream = chat.model, bool(chat.stream)
        call.cache_mode, call.cache_ttl_seconds = requested_cache(
            request.headers.get(CACHE_HEADER), request.headers.get(CACHE_TTL_HEADER)
        )
        call.admission = await admit_call(runtime.limit_policies, runtime.rate_limiter, principal, chat.model)
        call.canonical_body = canonical_body(ingress, raw, chat)
        call.credentials = pop_credentials(chat, request.headers.get(PROVIDER_KEY_HEADER))
        if call.stream:
            chunks = await open_stream(call, chat)
            headers = {**call.headers(), "cache-control": "no-cache", "x-accel-buffering": "no"}
            body = publish_after_last_byte(call, reply.stream(chunks), reply.stream_error)
            return Stream(body, media_type=reply.stream_media_type, headers=headers)
        completion = await complete(call, chat)
    except OrqenError as err:
        call.record(err.http_status, err.message)
        await call.charge_tokens()  # releases what the request held of its budgets
        raise
    # Both before the answer goes out, side by side: the event's JetStream ack and the budget charge
    # are independent round trips (to NATS and to Redis).
    if call.charges:
        await asyncio.gather(call.record_stored(200), call.charge_tokens())
    else:
        await call.record_stored(200)
    return Response(content=reply.body(completion), media_type="application/json", headers=call.headers())


def new_call(runtime: Runtime, principal: Principal, request_id: str, ingress: str, session_id: str) -> ChatCall:
    """The call of one request; a 400 when its session id (the X-Orqen-Session-Id header) is not printable ASCII."""
    checked_header_text(session_id, SESSION_HEADER)
    return ChatCall(
        runtime=runtime,
        context=common_pb2.RequestContext(
            request_id=request_id,
            account_id=principal.account_id,
            api_key_id=principal.api_key_id,
            session_id=session_id[:256],
            ingress=ingress,
        ),
        model_requested="",
        stream=False,
    )


def recorded_names(names: list[str]) -> list[str]:
    """The tool names the request event records: the first ones, up to RECORDED_NAMES_BYTES.

    The event must fit in one NATS message (1 MB by default): an event that does not can never be
    published, and would be retried for as long as the edge runs. A request with tens of
    thousands of tools is still counted whole in the plan's figures (tools_input, tokens).
    """
    budget = RECORDED_NAMES_BYTES
    for count, name in enumerate(names):
        budget -= len(name.encode()) + 2  # the name and its protobuf tag and length
        if budget < 0:
            return names[:count]
    return names


def validate_chat(chat: ChatRequest) -> None:
    """What every canonical request needs beyond its types before it leaves the edge."""
    if not chat.model:
        raise invalid_request("'model' is required and must be a non-empty string.")
    # Every ingress's model name (the Bedrock one from the path) is checked here, before it goes anywhere.
    checked_model(chat.model)
    if not chat.messages:
        raise invalid_request("'messages' is required and must be a non-empty array.")
    for tool in chat.tools or ():
        name = checked_text(tool_name(tool), "tools[].name")
        if len(name) > MAX_TOOL_NAME_CHARS:
            raise invalid_request(
                f"Invalid 'tools[].name': {len(name):,} characters long; at most {MAX_TOOL_NAME_CHARS} are accepted."
            )


def canonical_body(ingress: str, raw: bytes, chat: ChatRequest) -> bytes | None:
    """The caller's body `raw` when it is the canonical request `chat` as it stands, else None.

    The optimizer then gets these bytes instead of a re-encoding: hundreds of tools are hundreds
    of KB of JSON. Only OpenAI's shape is the canonical one, and a body with credentials in it is
    not passed on (they never leave the edge): call this before `pop_credentials`.
    """
    if ingress != CANONICAL_INGRESS or any(getattr(chat, name) is not None for name in CREDENTIAL_FIELDS):
        return None
    return raw


def pop_credentials(chat: ChatRequest | None, provider_key: str | None = None) -> dict[str, str]:
    """Remove the per-request credential extensions from the request and return them.

    A key in X-Orqen-Provider-Key travels as "api_key": dispatch uses it for the provider
    the requested model resolves to, in place of the account's and the operator's.
    """
    credentials: dict[str, str] = {}
    if chat is not None:
        for name in CREDENTIAL_FIELDS:
            value = getattr(chat, name)
            if value is not None:
                credentials[name] = checked_text(value, name)
                setattr(chat, name, None)
    if provider_key and provider_key.strip():
        credentials["api_key"] = checked_text(provider_key.strip(), PROVIDER_KEY_HEADER)
    return credentials


async def optimize(call: ChatCall, chat: ChatRequest) -> ChatRequest:
    """The plan's payload, or the original one when the optimizer fails or is too slow."""
    settings = call.runtime.settings
    tools = chat.tools or []
    call.tools_offered = call.tools_forwarded = [tool_name(tool) for tool in tools]
    if not tools and len(encode(chat.messages)) < settings.optimize_context_chars:
        return chat
    call.plan_stats = optimizer_pb2.PlanStats(tools_input=len(tools), tools_output=len(tools), routing="passthrough")
    try:
        plan = await call.runtime.downstream.plan(call.context, call.canonical_body or encode_request(chat))
    except (TimeoutError, grpc.aio.AioRpcError) as err:
        reason = err.code().name.lower() if isinstance(err, grpc.aio.AioRpcError) else "timeout"
        OPTIMIZER_FAIL_OPEN.labels(reason).inc()
        log.warning("optimizer failed, forwarding the original payload", reason=reason)
        return chat
    call.plan_stats, call.trace = plan.stats, plan.trace
    planned = decode_request(plan.chat_json)
    call.tools_forwarded = [tool_name(tool) for tool in planned.tools or ()]
    return planned


def forwardable(chat: ChatRequest) -> bytes:
    """The canonical request as dispatch receives it: Orqen's tool extensions removed."""
    tools = chat.tools or []
    if any(isinstance(t, Tool) and t.function.examples is not None for t in tools):
        chat = replace(chat, tools=[_without_examples(t) for t in tools])
    return encode_request(chat)


def _without_examples(tool: AnyTool) -> AnyTool:
    return replace(tool, function=replace(tool.function, examples=None)) if isinstance(tool, Tool) else tool


def _dispatch_request(call: ChatCall, chat: ChatRequest) -> dispatch_pb2.CompleteRequest:
    return dispatch_pb2.CompleteRequest(
        context=call.context,
        chat_json=forwardable(chat),
        credentials=call.credentials,
        tool_routing=call.trace,
        allowed_models=call.admission.limits.allowed_models if call.admission else (),
        cache=call.cache_mode,
        cache_ttl_seconds=call.cache_ttl_seconds,
        chunk_batches=call.stream,
    )


async def complete(call: ChatCall, chat: ChatRequest) -> ChatCompletion:
    """Run a non-streaming request; the canonical completion comes back."""
    forwarded = await optimize(call, chat)
    try:
        response = await call.runtime.downstream.complete(_dispatch_request(call, forwarded))
    except OrqenError as err:
        call.dispatch_failed(err)
        raise
    call.summary = response.summary
    completion = completion_decoder.decode(response.response_json)
    for choice in completion.choices:
        call.tools_called += [c.function.name for c in choice.message.tool_calls or ()]
    return completion


async def open_stream(call: ChatCall, chat: ChatRequest) -> AsyncIterator[list[ChatCompletionChunk]]:
    """Start a streaming request and return its canonical chunks, in the batches dispatch sent.

    The first upstream event is awaited here, so an upstream refusal still becomes a
    proper HTTP error instead of a broken stream.
    """
    forwarded = await optimize(call, chat)
    events = call.runtime.downstream.stream(_dispatch_request(call, forwarded))
    try:
        first = await anext(events)
        if not (first.chunks or first.chunk_json or first.HasField("summary")):
            # The cache verdict alone, from a dispatch that predates batches (a rolling upgrade):
            # an upstream refusal is still to come, and must become an HTTP error.
            call.summary.cache = first.cache
            first = await anext(events)
    except StopAsyncIteration:
        raise OrqenError.of(
            grpc.StatusCode.UNAVAILABLE, "The provider closed the stream without an answer.", http_status=502
        ) from None
    except OrqenError as err:
        call.dispatch_failed(err)
        raise
    call.summary.cache = first.cache or call.summary.cache  # consulted: whether it answers goes in the headers
    batch = _take(call, first)
    if batch and not first.HasField("summary"):
        # The headers go out before the summary arrives: the first chunk names the model that answers.
        call.summary.model = batch[0].model
    return _chunks(call, batch, events)


async def _chunks(
    call: ChatCall, first: list[ChatCompletionChunk], events: AsyncIterator[dispatch_pb2.StreamEvent]
) -> AsyncIterator[list[ChatCompletionChunk]]:
    """The canonical chunks, in batches; once the last is in, the request event is stored before the
    format ends its stream.

    Each format writes where its stream ends ([DONE], message_stop, metadata) after the last
    chunk, so a client that saw a stream end finds it in the request log.
    """
    if first:
        yield first
    try:
        async for event in events:
            if batch := _take(call, event):
                yield batch
    except OrqenError as err:  # after the first byte: the request event still gets every attempt
        call.dispatch_failed(err)
        raise
    await call.record_stored(200)


def _take(call: ChatCall, event: dispatch_pb2.StreamEvent) -> list[ChatCompletionChunk]:
    """A stream event's canonical chunks, their tool calls noted; the summary, on the last, is kept.

    An unbatched event (from a dispatch that predates batches, during a rolling upgrade) is a
    batch of one.
    """
    if event.HasField("summary"):
        call.summary = event.summary
    chunks = [chunk_decoder.decode(data) for data in event.chunks or ([event.chunk_json] if event.chunk_json else [])]
    for chunk in chunks:
        for choice in chunk.choices:
            # A stream names each call once, in the delta that starts it.
            call.tools_called += [
                c.function.name for c in choice.delta.tool_calls or () if c.function and c.function.name
            ]
    return chunks
