"""The orqen.v1.Dispatch gRPC service: choose the models, call them resiliently, summarise.

For each request: the account's configuration (saved credentials, fallback chain, models
switched off) gives the targets — the requested model, or what an orqen/* rule chose with
its alternates, then the account's fallback models — each with the credentials it is called
with (per-request > the account's saved > the operator's environment). A load-balanced model
becomes one target per deployment, in the order the balancer chose (orqen_dispatch.deployments).
The `Dispatcher` tries them with retries, timeouts and circuit breakers, and every call made is
in the summary. A request that uses the response cache (orqen_dispatch.cache_use) is answered
from it when it holds the answer, without calling anything; otherwise the answer is stored once
it is whole.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing

import grpc

from orqen.v1 import accounting_pb2, dispatch_pb2, dispatch_pb2_grpc
from orqen_common.allowed_models import ROUTING_PREFIX, model_allowed
from orqen_common.canonical import TokenUsage
from orqen_common.context import account_scope
from orqen_common.errors import OrqenError, invalid_request, kind_for_grpc
from orqen_common.formats.openai import ChatRequest, decode_request, encode
from orqen_common.grpc_server import ServicerContext
from orqen_common.prices import price_source
from orqen_dispatch.account_config import AccountConfig, AccountConfigs
from orqen_dispatch.available_models import AvailableModels, list_statuses, model_infos
from orqen_dispatch.cache_use import CacheUse, cache_use, hit_summary
from orqen_dispatch.cached_answer import CachedAnswer, StreamFold, cached_answer, replay_chunks
from orqen_dispatch.credentials import CredentialStore, merge
from orqen_dispatch.deployments import Balanced, LoadBalancing
from orqen_dispatch.latency import LatencyStats, ModelStats
from orqen_dispatch.model_profiles import ModelProfile
from orqen_dispatch.model_routing import Choice, ModelChooser, routable
from orqen_dispatch.providers.base import StreamState, UpstreamError
from orqen_dispatch.proxy import ProxyService
from orqen_dispatch.read_ahead import ReadAhead
from orqen_dispatch.resilience import AttemptRecord, DispatchedStream, Dispatcher, DispatchFailedError, Target
from orqen_dispatch.response_cache import ResponseCache
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.summary import as_orqen_error, ms_since, summary

# At most this many chunks in one message (a stream's chunks are deltas of a few hundred bytes).
CHUNKS_PER_MESSAGE = 64


class DispatchServicer(dispatch_pb2_grpc.DispatchServicer):
    def __init__(
        self,
        router: ProviderRouter,
        chooser: ModelChooser,
        dispatcher: Dispatcher,
        configs: AccountConfigs,
        store: CredentialStore,
        latency: LatencyStats,
        available: AvailableModels,
        proxy: ProxyService,
        cache: ResponseCache,
        balancing: LoadBalancing,
    ) -> None:
        self._router = router
        self._chooser = chooser
        self._dispatcher = dispatcher
        self._configs = configs
        self._store = store
        self._latency = latency
        self._available = available
        self._proxy = proxy
        self._cache = cache
        self._balancing = balancing

    async def Complete(
        self, request: dispatch_pb2.CompleteRequest, context: ServicerContext
    ) -> dispatch_pb2.CompleteResponse:
        chat = _parse(request.chat_json)
        targets, use, cached = await self._prepare(chat, request)
        if cached is not None:
            return dispatch_pb2.CompleteResponse(response_json=encode(cached.fresh()), summary=hit_summary(cached))
        started = time.perf_counter()
        try:
            completion, target, attempts = await self._dispatcher.complete(targets, chat)
        except DispatchFailedError as err:
            self._measure(targets, err.attempts)
            target, elapsed = err.target, ms_since(started)
            failed = summary(target, target.model, TokenUsage(), err.status, elapsed, 0.0, err.attempts)
            raise as_orqen_error(err, summary=failed) from None
        self._measure(targets, attempts)
        self._balancing.charge(target, completion.usage)
        elapsed = ms_since(started)
        model = completion.body.model or target.model
        answered = summary(target, model, completion.usage, completion.status, elapsed, elapsed, attempts)
        if use is not None:
            answered.cache = "miss"
            answer = cached_answer(target.provider.name, model, completion.usage, completion.body)
            self._cache.put_later(use.key, answer, use.ttl_seconds)
        return dispatch_pb2.CompleteResponse(response_json=encode(completion.body), summary=answered)

    async def Stream(
        self, request: dispatch_pb2.CompleteRequest, context: ServicerContext
    ) -> AsyncIterator[dispatch_pb2.StreamEvent]:
        async with aclosing(self._stream(request)) as events:
            async for event in events:
                for out in (event,) if request.chunk_batches else _one_a_message(event):
                    yield out

    async def _stream(self, request: dispatch_pb2.CompleteRequest) -> AsyncGenerator[dispatch_pb2.StreamEvent, None]:
        """The stream in its batched shape (see StreamEvent)."""
        chat = _parse(request.chat_json)
        targets, use, cached = await self._prepare(chat, request)
        if cached is not None:
            replayed = [encode(chunk) for chunk in replay_chunks(cached.fresh(), cached.token_usage())]
            messages = [replayed[i : i + CHUNKS_PER_MESSAGE] for i in range(0, len(replayed), CHUNKS_PER_MESSAGE)]
            for i, chunks in enumerate(messages):
                final = i == len(messages) - 1
                yield dispatch_pb2.StreamEvent(
                    chunks=chunks, cache="hit" if i == 0 else "", summary=hit_summary(cached) if final else None
                )
            return
        cache = "miss" if use is not None else ""  # goes out with the first message
        fold = StreamFold() if use is not None else None  # the answer, whole, only to be cached
        state = StreamState()
        attempts: list[AttemptRecord] = []
        started = time.perf_counter()
        ttft = 0.0
        model_used = ""
        stream: DispatchedStream = self._dispatcher.stream(targets, chat, state, attempts)
        last = dispatch_pb2.StreamEvent()
        try:
            async with aclosing(stream), aclosing(ReadAhead(stream, CHUNKS_PER_MESSAGE)) as batches:
                async for batch in batches:
                    if not ttft:
                        ttft = ms_since(started)
                    for chunk in batch:
                        model_used = chunk.model or model_used
                        if fold is not None:
                            fold.add(chunk)
                    event = dispatch_pb2.StreamEvent(chunks=[encode(chunk) for chunk in batch], cache=cache)
                    cache = ""
                    if batches.finished:  # the stream is over: the summary goes out with these chunks
                        last = event
                        break
                    yield event
        except UpstreamError as err:
            # After the first chunk (not a DispatchFailedError) there is no retry: the caller has part of an answer.
            target = err.target if isinstance(err, DispatchFailedError) else stream.target or targets[0]
            failed = summary(
                target, model_used or target.model, state.usage, err.status, ms_since(started), ttft, attempts
            )
            raise as_orqen_error(err, target, summary=failed) from None
        finally:
            self._measure(targets, attempts)
        target = stream.target or targets[0]
        self._balancing.charge(target, state.usage)
        answered = summary(
            target, model_used or target.model, state.usage, state.status, ms_since(started), ttft, attempts
        )
        if use is not None and fold is not None:  # (`fold` is kept exactly when the cache was consulted)
            answered.cache = "miss"
            folded = fold.completion()
            if folded is not None:
                answer = cached_answer(target.provider.name, answered.model, state.usage, folded)
                self._cache.put_later(use.key, answer, use.ttl_seconds)
        last.summary.CopyFrom(answered)
        last.cache = last.cache or cache
        yield last

    async def _prepare(
        self, chat: ChatRequest, request: dispatch_pb2.CompleteRequest
    ) -> tuple[list[Target], CacheUse | None, CachedAnswer | None]:
        """The targets to try, how the request uses the response cache, and its cached answer if it has one."""
        account_id = account_scope(request.context.account_id)
        config = await self._configs.get(account_id)
        targets = await self._targets(account_id, config, chat, request)
        use = cache_use(request, account_id, config, chat, targets[0])
        cached = await self._cache.get(use.key) if use is not None and use.mode == "use" else None
        return targets, use, cached

    async def Proxy(
        self, request_iterator: AsyncIterator[dispatch_pb2.ProxyRequestFrame], context: ServicerContext
    ) -> AsyncIterator[dispatch_pb2.ProxyResponseFrame]:
        async for frame in self._proxy.serve(request_iterator):
            yield frame

    async def SaveCredential(
        self, request: dispatch_pb2.SaveCredentialRequest, context: ServicerContext
    ) -> accounting_pb2.CredentialInfo:
        account_id = account_scope(request.account_id)
        return await self._store.save(
            account_id, request.provider, request.auth, dict(request.secret), request.base_url, request.region
        )

    async def ListModels(
        self, request: dispatch_pb2.ListModelsRequest, context: ServicerContext
    ) -> dispatch_pb2.ListModelsResponse:
        account_id = account_scope(request.account_id)
        config = await self._configs.get(account_id)
        available = await self._available.of(config)
        stats = await self._latency.snapshot(m.model for m in available.models)
        models = model_infos(available, config.disabled_models, stats)
        for model in models:
            if not model.id.startswith(ROUTING_PREFIX):
                model.circuit = self._dispatcher.breakers.state(model.provider)
        by_id = {model.id: model for model in models}
        for balanced in self._balancing.models(account_id, config):
            name = balanced.model.model
            info = by_id.get(name)
            if info is None:  # a logical model of its own, not one a provider lists
                provider = balanced.model.deployments[0].provider
                info = dispatch_pb2.ModelInfo(id=name, provider=provider, enabled=name not in config.disabled_models)
                models.append(info)
            info.balance_strategy = balanced.model.strategy
            info.deployments.extend(await self._balancing.status(balanced))
        return dispatch_pb2.ListModelsResponse(
            models=models, prices_as_of=price_source(), provider_lists=list_statuses(available)
        )

    async def GetResponseCacheUsage(
        self, request: dispatch_pb2.ResponseCacheRef, context: ServicerContext
    ) -> dispatch_pb2.ResponseCacheUsage:
        held = await self._cache.usage(account_scope(request.account_id))
        return dispatch_pb2.ResponseCacheUsage(entries=held.entries, bytes=held.bytes)

    async def PurgeResponseCache(
        self, request: dispatch_pb2.ResponseCacheRef, context: ServicerContext
    ) -> dispatch_pb2.ResponseCacheUsage:
        held = await self._cache.purge(account_scope(request.account_id))
        return dispatch_pb2.ResponseCacheUsage(entries=held.entries, bytes=held.bytes)

    async def _targets(
        self, account_id: str, config: AccountConfig, chat: ChatRequest, request: dispatch_pb2.CompleteRequest
    ) -> list[Target]:
        """The models to try in order, each with its provider and credentials."""
        model = chat.model
        # Only a routing string reads the lists and figures: a named model costs no Redis read for them.
        listed: Sequence[ModelProfile] = ()
        stats: Mapping[str, ModelStats] = {}
        if model.startswith(ROUTING_PREFIX):
            listed = (await self._available.of(config)).models
            if listed and request.allowed_models:
                # A routing string picks among the models the caller's key may use.
                listed = [m for m in listed if model_allowed(m.model, request.allowed_models)]
                if not listed:
                    raise _not_allowed(model)
            stats = await self._latency.snapshot(m.model for m in routable(listed, config.disabled_models))
        choices = self._chooser.choose(model, chat, listed, config.disabled_models, stats, request.tool_routing)
        chosen = {choice.model for choice in choices}
        choices += [Choice(m, "fallback") for m in config.fallback_models if m not in chosen]
        choices = [choice for choice in choices if model_allowed(choice.model, request.allowed_models)]
        if not choices:
            raise _not_allowed(model)
        saved = config.credentials
        # The provider the caller's model names, the only one its own key is for (a routing string names none).
        requested = None if model.startswith(ROUTING_PREFIX) else self._router.resolve(model, saved.keys())[0].name
        targets: list[Target] = []
        for choice in choices:
            balanced = self._balancing.find(account_id, config, choice.model)
            if balanced is not None:
                targets += await self._deployment_targets(balanced, choice, config, request, requested)
                continue
            provider, provider_model = self._router.resolve(choice.model, saved.keys())
            credentials = merge(request.credentials, saved.get(provider.name), provider.name, requested)
            targets.append(Target(provider, provider_model, credentials, choice.reason, choice.model))
        if not targets:
            raise invalid_request(f"No deployment of {model!r} is on a connected provider: connect one first.")
        return targets

    async def _deployment_targets(
        self,
        balanced: Balanced,
        choice: Choice,
        config: AccountConfig,
        request: dispatch_pb2.CompleteRequest,
        requested: str | None,
    ) -> list[Target]:
        """One target per deployment of a balanced model whose provider is connected, in the balancer's order.

        The first carries the choice's reason, the others are "failover"; a deployment's region
        (Bedrock) wins over its credential's.
        """
        saved, connected = config.credentials, self._available.connected(config)
        logical_upstream = self._router.resolve(choice.model, saved.keys())[1]
        targets: list[Target] = []
        for slot in await self._balancing.order(balanced):
            deployment = slot.deployment
            if deployment.provider not in connected:
                continue
            upstream = deployment.model or logical_upstream
            provider, provider_model = self._router.resolve(f"{deployment.provider}/{upstream}", saved.keys())
            credentials = merge(request.credentials, saved.get(provider.name), provider.name, requested)
            if deployment.region:
                credentials["aws_region_name"] = deployment.region
            reason = choice.reason if not targets else "failover"
            targets.append(Target(provider, provider_model, credentials, reason, choice.model, slot))
        return targets

    def _measure(self, targets: Sequence[Target], attempts: Sequence[AttemptRecord]) -> None:
        """Fold every call made into its model's latency and success figures (orqen/fast reads them).

        Off the request's path: they are written in batches (orqen_dispatch.latency).
        """
        names = {(t.provider.name, t.model): t.name for t in targets}
        for attempt in attempts:
            if attempt.duration_ms <= 0:  # skipped for an open circuit: nothing was measured
                continue
            name = names.get((attempt.provider, attempt.model), attempt.model)
            self._latency.record(name, attempt.duration_ms, not attempt.error)


def _one_a_message(event: dispatch_pb2.StreamEvent) -> Iterator[dispatch_pb2.StreamEvent]:
    """A batched event in the shape of callers that did not ask for batches: the cache verdict, each
    chunk and the summary in messages of their own."""
    if event.cache:
        yield dispatch_pb2.StreamEvent(cache=event.cache)
    for chunk in event.chunks:
        yield dispatch_pb2.StreamEvent(chunk_json=chunk)
    if event.HasField("summary"):
        yield dispatch_pb2.StreamEvent(summary=event.summary)


def _parse(chat_json: bytes) -> ChatRequest:
    chat = decode_request(chat_json)
    if not chat.model:
        raise invalid_request("chat_json must be a chat request with a model.")
    return chat


def _not_allowed(model: str) -> OrqenError:
    """No model the request could be answered by is one its API key may use (CompleteRequest.allowed_models)."""
    return OrqenError(
        kind_for_grpc(grpc.StatusCode.PERMISSION_DENIED),
        f"No model {model!r} would pick is allowed for this API key.",
        code="model_not_allowed",
    )
