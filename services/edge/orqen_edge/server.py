"""Runs the edge: HTTP and HTTPS listeners on one app, graceful stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import structlog
import uvicorn

from orqen_common.heap import collect_young_less_often, freeze_startup_heap, watch_collections
from orqen_common.logging import configure_logging
from orqen_common.tracing import configure_tracing
from orqen_edge.app import create_app
from orqen_edge.devcert import ensure_dev_certificate
from orqen_edge.middleware import RequestContextMiddleware
from orqen_edge.runtime import Runtime
from orqen_edge.settings import EdgeSettings

log = structlog.get_logger(__name__)


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signals to us, so two listeners can share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listener(app: object, settings: EdgeSettings, port: int, tls: tuple[Path, Path] | None) -> _Listener:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.edge_host,
        port=port,
        lifespan="off",  # resources are opened once, around both listeners
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=settings.edge_keep_alive_seconds,
        timeout_graceful_shutdown=int(settings.grace_seconds),
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    return _Listener(config)


def tls_files(settings: EdgeSettings) -> tuple[Path, Path]:
    if settings.tls_cert and settings.tls_key:
        return settings.tls_cert, settings.tls_key
    return ensure_dev_certificate(settings.home / "tls")


async def serve(settings: EdgeSettings) -> None:
    configure_logging("edge", settings.log_level, settings.log_format)
    configure_tracing("edge")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        runtime = await Runtime.open(settings, stack)
        app = RequestContextMiddleware(create_app(runtime))
        listeners = [_listener(app, settings, settings.edge_port, None)]
        if settings.edge_tls_port:
            cert, key = tls_files(settings)
            listeners.append(_listener(app, settings, settings.edge_tls_port, (cert, key)))
            log.info("TLS listener", port=settings.edge_tls_port, certificate=str(cert))
        freeze_startup_heap()
        collect_young_less_often()
        watch_collections()
        tasks = [asyncio.create_task(listener.serve()) for listener in listeners]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        if stopper not in done:
            log.error("a listener stopped unexpectedly; shutting down")
        stopping = loop.time()
        for listener in listeners:
            listener.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        # Then the runtime closes (events flushed to NATS, channels, Redis): the next line's time less this one's.
        log.info("listeners stopped", seconds=round(loop.time() - stopping, 3))
    log.info("stopped", seconds=round(loop.time() - stopping, 3))
