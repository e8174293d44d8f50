"""One gRPC server bootstrap for every service: interceptors, health, reflection, graceful stop."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace

from orqen_common import metrics
from orqen_common.auth import ApiKeyVerifier, authenticate_bearer, bearer_token
from orqen_common.context import REQUEST_ID_HEADER, bind_request_id, new_request_id, principal_var
from orqen_common.errors import DETAIL_METADATA, HTTP_STATUS_METADATA, RETRY_AFTER_METADATA, OrqenError
from orqen_common.grpc_client import MESSAGE_SIZE_OPTIONS
from orqen_common.heap import collect_young_less_often, freeze_startup_heap, watch_collections
from orqen_common.logging import configure_logging
from orqen_common.settings import ServiceSettings, grpc_host, grpc_port
from orqen_common.tracing import configure_tracing
from orqen_common.worker_group import WorkerLink

log = structlog.get_logger(__name__)

ServicerContext = grpc.aio.ServicerContext[Any, Any]
"""The context every servicer method receives."""

# Probes and tooling must work without credentials.
_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Request id, authentication, tracing, metrics and error mapping for every call."""

    def __init__(
        self,
        service: str,
        internal_token: str,
        verify_api_key: ApiKeyVerifier,
        unavailable: Callable[[Exception], bool] = lambda err: False,
    ) -> None:
        self._service = service
        self._internal_token = internal_token
        self._verify_api_key = verify_api_key
        self._unavailable = unavailable
        self._tracer = trace.get_tracer(__name__)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),  # type: ignore[arg-type]  # aio: async generators
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method),  # type: ignore[arg-type]  # aio: async generators
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _enter(self, context: ServicerContext, method: str) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        bind_request_id(metadata.get(REQUEST_ID_HEADER) or new_request_id())
        principal = await authenticate_bearer(
            bearer_token(metadata.get("authorization")), self._internal_token, self._verify_api_key
        )
        if principal is None:
            # Aborted without an HTTP status: to the edge this is a fault between services,
            # not something its caller did.
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "Missing or invalid credentials: send 'authorization: Bearer <internal token or sk-orq- key>'.",
            )
        principal_var.set(principal)

    def _span(self, context: ServicerContext, method: str) -> Any:
        carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        return self._tracer.start_as_current_span(
            method, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER
        )

    async def _fail(self, context: ServicerContext, method: str, err: BaseException) -> None:
        if isinstance(err, OrqenError):
            trailers: list[tuple[str, str | bytes]] = [(HTTP_STATUS_METADATA, str(err.http_status))]
            if err.retry_after is not None:
                trailers.append((RETRY_AFTER_METADATA, str(err.retry_after)))
            if err.detail is not None:
                trailers.append((DETAIL_METADATA, err.detail))
            context.set_trailing_metadata(tuple(trailers))
            await context.abort(err.kind.grpc_code, err.message)
        if isinstance(err, Exception) and self._unavailable(err):
            # A store that is down or restarting: the caller may retry, and the edge answers 503, not 500.
            log.warning("a dependency is unavailable", method=method, error=repr(err))
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"The {self._service} service's store is unavailable.")
        log.exception("unhandled error in gRPC handler", method=method)
        await context.abort(grpc.StatusCode.INTERNAL, "Internal error; the request id is in the logs.")

    def _observe(self, method: str, context: ServicerContext, started: float) -> None:
        code = context.code() or grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        metrics.GRPC_REQUESTS.labels(self._service, method, name).inc()
        metrics.GRPC_LATENCY.labels(self._service, method).observe(time.perf_counter() - started)

    def _wrap_unary(self, behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: ServicerContext) -> Any:
            started = time.perf_counter()
            with self._span(context, method):
                try:
                    await self._enter(context, method)
                    return await behavior(request, context)
                except Exception as err:  # CancelledError is a BaseException and passes through
                    if _is_abort(err):
                        raise
                    await self._fail(context, method, err)
                finally:
                    self._observe(method, context, started)

        return wrapper

    def _wrap_stream(
        self, behavior: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            with self._span(context, method):
                try:
                    await self._enter(context, method)
                    async for item in behavior(request, context):
                        yield item
                except Exception as err:  # CancelledError is a BaseException and passes through
                    if _is_abort(err):
                        raise
                    await self._fail(context, method, err)
                finally:
                    self._observe(method, context, started)

        return wrapper


async def _run(job: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
    await job(stop)


def _is_abort(err: BaseException) -> bool:
    # context.abort() raises this to end the call; it must propagate untouched.
    return type(err).__name__ == "AbortError"


def bind(server: grpc.aio.Server, host: str, port: int) -> None:
    """Listen on `host`:`port` only, or say which setting to change."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError as err:  # grpc's way of saying the bind failed
        raise RuntimeError(
            f"cannot listen on {address} ({err}); set ORQEN_GRPC_HOST to an interface of this machine "
            "(0.0.0.0 for all of them)"
        ) from None


@dataclass
class ServiceParts:
    """What a service contributes to the shared bootstrap."""

    register: Callable[[grpc.aio.Server], None]
    service_names: list[str]
    verify_api_key: ApiKeyVerifier
    # Work that must finish before the service reports SERVING (model load, cache warm-up).
    warm_up: Callable[[], Awaitable[None]] | None = None
    background: list[Callable[[asyncio.Event], Awaitable[None]]] = field(default_factory=list)
    # Failures that mean a store is down or restarting (orqen_common.db.unavailable): answered
    # UNAVAILABLE, which the edge turns into a 503 and callers may retry, instead of INTERNAL.
    unavailable: Callable[[Exception], bool] = lambda err: False


async def run_grpc_service(
    name: str,
    settings: ServiceSettings,
    listen_addr: str,
    build: Callable[[AsyncExitStack], Awaitable[ServiceParts]],
    worker: WorkerLink | None = None,
) -> None:
    """Run one gRPC service until SIGTERM/SIGINT, then stop gracefully.

    `build` opens the service's resources on the exit stack (closed after the server
    stops, so in-flight calls still have them) and returns its parts. `worker`: this process
    is one worker of a group sharing the port (orqen_common.worker_group): it binds once the
    whole group is ready, stops with the group, and its metrics are served by the group's parent.
    """
    configure_logging(name, settings.log_level, settings.log_format)
    configure_tracing(name)
    host, port = settings.grpc_host or grpc_host(listen_addr), grpc_port(listen_addr)
    if worker is None:
        metrics.start_metrics_server(settings.metrics_host or host, settings.metrics_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with AsyncExitStack() as stack:
        parts = await build(stack)
        interceptor = ServerInterceptor(
            name, settings.internal_token.get_secret_value(), parts.verify_api_key, parts.unavailable
        )
        # Workers of a group listen on one port; the kernel spreads connections over them.
        options = [*MESSAGE_SIZE_OPTIONS, ("grpc.so_reuseport", 1)] if worker else MESSAGE_SIZE_OPTIONS
        server = grpc.aio.server(interceptors=[interceptor], options=options)
        parts.register(server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [*parts.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        for svc in ("", *parts.service_names):
            await health_servicer.set(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
        if worker is not None and not await worker.join(stop):
            log.info("stopped before the worker group was ready")
            return
        bind(server, host, port)
        await server.start()
        log.info("gRPC service listening", host=host, port=port)
        tasks = [asyncio.create_task(_run(job, stop)) for job in parts.background]
        try:
            if parts.warm_up is not None:
                await parts.warm_up()
            freeze_startup_heap()
            collect_young_less_often()
            watch_collections()
            for svc in ("", *parts.service_names):
                await health_servicer.set(svc, health_pb2.HealthCheckResponse.SERVING)
            log.info("gRPC service ready")
            await stop.wait()
        finally:
            log.info("shutting down", grace_seconds=settings.grace_seconds)
            await health_servicer.enter_graceful_shutdown()
            await server.stop(settings.grace_seconds)
            stop.set()
            if tasks:
                await asyncio.wait(tasks, timeout=settings.grace_seconds)
    log.info("stopped")
