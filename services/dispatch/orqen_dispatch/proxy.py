"""The stateless proxy families (Dispatch.Proxy): embeddings, images, audio, responses, rerank, ...

The model string picks the provider exactly as for chat (`ProviderRouter`), and the call
gets the credentials chat would (the caller's X-Orqen-Provider-Key, else the account's
saved credential with its base URL, else the operator's environment). The body goes
upstream as the provider's own API takes it, with only the model renamed for it
(`openai/whisper-1` -> `whisper-1`); the answer comes back byte for byte. No chat
optimization, no routing strings, no fallback models (those are chat models).

Retries follow the chat rules, and only before any byte went back. A JSON body is kept
and can be sent again; a multipart upload streams through and is sent once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from orqen.v1 import dispatch_pb2
from orqen_common.allowed_models import ROUTING_PREFIX
from orqen_common.context import account_scope
from orqen_common.errors import OrqenError, invalid_request, not_found
from orqen_common.proxy_families import FAMILIES, ProxyFamily, family
from orqen_dispatch.account_config import AccountConfigs
from orqen_dispatch.credentials import merge
from orqen_dispatch.providers.base import UpstreamError
from orqen_dispatch.providers.openai import OpenAICompatible
from orqen_dispatch.proxy_body import MultipartEncoder, json_for_upstream, read_json_body
from orqen_dispatch.proxy_usage import UsageWatcher
from orqen_dispatch.resilience import Answer, AttemptRecord, Dispatcher, DispatchFailedError, Target
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.summary import as_orqen_error, ms_since, summary
from orqen_dispatch.upstream_http import UPSTREAM_ERRORS, UpstreamResponse

# What OpenAI's own API offers of the families (it has no rerank, OCR or video generations endpoint).
OPENAI_FAMILIES = frozenset(f.name for f in FAMILIES) - {"rerank", "ocr", "videos/generations"}
# Groq's OpenAI-compatible API: speech in and out, and the Responses API.
GROQ_FAMILIES = frozenset({"responses", "audio/transcriptions", "audio/translations", "audio/speech"})
# Bytes of an answer per frame back to the edge.
CHUNK_BYTES = 64 * 1024

Frames = AsyncIterator[dispatch_pb2.ProxyRequestFrame]


class ProxyService:
    def __init__(self, router: ProviderRouter, dispatcher: Dispatcher, configs: AccountConfigs) -> None:
        self._router = router
        self._dispatcher = dispatcher
        self._configs = configs

    async def serve(self, frames: Frames) -> AsyncIterator[dispatch_pb2.ProxyResponseFrame]:
        """One proxied call: its head and body frames in, the answer's head, bytes and summary out."""
        head = await _head(frames)
        started = time.perf_counter()
        attempts: list[AttemptRecord] = []
        try:
            answer = await self._open(head, frames, attempts)
        except OrqenError:
            # Read the rest before refusing: gRPC turns an answer given while the caller still
            # sends into a failure of the call, and the caller would never see this error.
            async for _ in frames:
                pass
            raise
        response, target = answer.result, answer.target
        content_type = response.headers.get("content-type", "application/octet-stream")
        watcher = UsageWatcher(content_type)
        ttft = 0.0
        status, error = response.status, ""
        try:
            # Inside the try: a caller that leaves at any point closes the upstream answer.
            yield dispatch_pb2.ProxyResponseFrame(
                head=dispatch_pb2.ProxyResponseHead(
                    status=response.status,
                    content_type=content_type,
                    provider=target.provider.name,
                    model=target.model,
                )
            )
            async for chunk in response.chunks(CHUNK_BYTES):
                ttft = ttft or ms_since(started)
                watcher.feed(chunk)
                yield dispatch_pb2.ProxyResponseFrame(body_chunk=chunk)
        except UPSTREAM_ERRORS as err:
            # Part of the answer is out: no retry, the caller gets a truncated body.
            status, error = 502, f"{target.provider.name} broke the connection: {err.__class__.__name__}"
            raise as_orqen_error(UpstreamError(status, error), target) from None
        finally:
            response.close()
            self._dispatcher.settle(answer, status, error)
        elapsed = ms_since(started)
        usage = watcher.finish()
        model = target.model or watcher.model
        yield dispatch_pb2.ProxyResponseFrame(
            summary=summary(target, model, usage, response.status, elapsed, ttft, attempts)
        )

    async def _open(
        self, head: dispatch_pb2.ProxyHead, frames: Frames, attempts: list[AttemptRecord]
    ) -> Answer[UpstreamResponse]:
        """The upstream's answer (status and headers; its body still to read), after the retries allowed."""
        entry = _family(head)
        body = await read_json_body(frames) if entry.body == "json" else None
        target = await self._target(head, entry)
        upstream_model = target.model if head.model else ""
        content: bytes | MultipartEncoder
        if body is not None:
            content, content_type = json_for_upstream(body, upstream_model), "application/json"
        else:
            content = MultipartEncoder(frames, upstream_model)
            content_type = content.content_type
        provider = target.provider
        assert isinstance(provider, OpenAICompatible)  # _target only picks providers that proxy

        async def call(target: Target) -> UpstreamResponse:
            return await provider.open_proxy(entry.name, content, content_type, target.credentials)

        try:
            return await self._dispatcher.open([target], attempts, call, replayable=body is not None)
        except DispatchFailedError as err:
            if isinstance(content, MultipartEncoder):
                await content.settle()  # before the caller's frames are read to their end
            raise as_orqen_error(err) from None

    async def _target(self, head: dispatch_pb2.ProxyHead, entry: ProxyFamily) -> Target:
        """The provider, model name and credentials of the call."""
        config = await self._configs.get(account_scope(head.context.account_id))
        if head.model.startswith(ROUTING_PREFIX):
            raise invalid_request(
                f"Routing strings ({ROUTING_PREFIX}*) choose chat models; /v1/{entry.name} needs a model name."
            )
        if head.model:
            provider, model = self._router.resolve(head.model, config.credentials.keys())
        else:
            provider, model = self._router.default, ""
        if not isinstance(provider, OpenAICompatible) or not provider.offers(entry.name):
            raise invalid_request(
                f"The {provider.name} provider does not offer /v1/{entry.name}. Orqen forwards it to providers "
                "that do: OpenAI, or an OpenAI-compatible provider named in the model as <provider>/<model>."
            )
        credentials = merge(head.credentials, config.credentials.get(provider.name), provider.name, provider.name)
        return Target(provider, model, credentials, "requested", head.model)


async def _head(frames: Frames) -> dispatch_pb2.ProxyHead:
    try:
        first = await anext(frames)
    except StopAsyncIteration:
        raise invalid_request("A proxy call starts with its head frame.") from None
    if first.WhichOneof("frame") != "head":
        raise invalid_request("A proxy call starts with its head frame.")
    return first.head


def _family(head: dispatch_pb2.ProxyHead) -> ProxyFamily:
    entry = family(head.family)
    if entry is None:
        raise not_found(f"{head.family!r} is not a proxy family Orqen forwards.")
    if head.body_kind != entry.body:
        raise invalid_request(f"/v1/{entry.name} takes a {entry.body} body, not {head.body_kind or 'none'}.")
    if entry.model_required and not head.model:
        raise invalid_request(f"'model' is required for /v1/{entry.name}.")
    return entry
