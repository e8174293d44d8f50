"""Several processes of one gRPC service on one port, started, watched and stopped together.

A CPU-bound service (the optimizer) holds the GIL while it works, so one process uses one
core. `run_worker_group` starts `count` worker processes instead: each is the whole service
(its own event loop, model and caches) listening on the same port with SO_REUSEPORT, and the
kernel hands each new *connection* to one of them. Clients open several channels
(orqen_common.grpc_client.open_channels) so that their calls spread over the workers.

The parent only supervises and serves the metrics:
- Workers bind the port only once every one of them has loaded what it needs (each reports
  ready on a pipe, then the parent tells all to go): a connection to the port always meets a
  worker that can serve, and health says SERVING only once every worker can.
- A worker that exits stops the whole group, and the parent exits with code 1: whatever
  restarts a crashed service (`orqen up`, Kubernetes, compose's restart policy) restarts the
  group. Serving on with fewer workers would hide the crash behind lower capacity.
- A worker holds the read end of a pipe whose write end only the parent holds: when the
  parent dies (SIGKILL included) the worker reads end-of-file and stops gracefully.
- Metrics: workers cannot share one metrics port, so each writes its samples to files
  (prometheus_client's multiprocess mode) and the parent serves them summed on the
  service's metrics port.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import shutil
import signal
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from orqen_common.logging import configure_logging
from orqen_common.settings import ServiceSettings, grpc_host, grpc_port

log = structlog.get_logger(__name__)

# prometheus_client reads it when it is imported: workers get it in their environment.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_READY, _GO = b"r", b"g"
# Beyond the workers' own grace period: time to exit once their calls are done.
_EXIT_SECONDS = 3.0
# A worker is one CPU's worth of work: the thread pools of native libraries (OpenBLAS under numpy,
# OpenMP) would only have the workers contend for the same cores. An operator's value is kept.
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def available_cpus(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (a container's CPU limit).

    In a container the affinity mask names every core of the node, the limit is the quota.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        return max(1, min(count, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or "max": no quota
        return count


async def _read_byte(fd: int) -> bytes:
    """One byte from a pipe without blocking the event loop; b"" at end-of-file."""
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 1)


@dataclass(frozen=True, slots=True)
class WorkerLink:
    """A worker's place in its group, its ends of two pipes to the parent: `index:count:group_id:ready_fd:group_fd`."""

    index: int
    count: int  # workers in the group
    group_id: int  # random, one per start of the group: callers tell replicas apart by it
    ready_fd: int  # written once: this worker can serve
    group_fd: int  # read: "go" once every worker can serve; end-of-file once the parent is gone

    @classmethod
    def parse(cls, value: str) -> WorkerLink:
        index, count, group_id, ready_fd, group_fd = (int(part) for part in value.split(":"))
        return cls(index, count, group_id, ready_fd, group_fd)

    def __str__(self) -> str:
        return f"{self.index}:{self.count}:{self.group_id}:{self.ready_fd}:{self.group_fd}"

    async def join(self, stop: asyncio.Event) -> bool:
        """Report this worker ready, wait for the whole group; False if stop or the parent's end came first.

        From then on the parent's end sets `stop`: a worker never outlives its group.
        """
        try:
            os.write(self.ready_fd, _READY)
        except BrokenPipeError:  # the parent is gone
            return False
        finally:
            os.close(self.ready_fd)
        go = asyncio.ensure_future(_read_byte(self.group_fd))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([go, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not go.done() or go.result() != _GO:
            go.cancel()
            return False
        loop = asyncio.get_running_loop()

        def parent_gone() -> None:
            loop.remove_reader(self.group_fd)
            stop.set()

        loop.add_reader(self.group_fd, parent_gone)
        return True


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    ready_fd: int
    group_fd: int


def run_worker_group(
    name: str,
    settings: ServiceSettings,
    listen_addr: str,
    count: int,
    worker_argv: Callable[[WorkerLink], Sequence[str]],
) -> int:
    """Run `count` workers (`worker_argv(link)` each) until SIGTERM/SIGINT or one exits; the exit code.

    0 after a requested stop, 1 when a worker exited on its own (the group is stopped with it).
    """
    configure_logging(name, settings.log_level, settings.log_format)
    return asyncio.run(_run(name, settings, listen_addr, count, worker_argv))


async def _run(
    name: str,
    settings: ServiceSettings,
    listen_addr: str,
    count: int,
    worker_argv: Callable[[WorkerLink], Sequence[str]],
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    env = {**SINGLE_THREADED, **os.environ}
    metrics_dir = None
    if settings.metrics_port:
        metrics_dir = Path(tempfile.gettempdir()) / f"orqen-{name}-metrics-{grpc_port(listen_addr)}"
        shutil.rmtree(metrics_dir, ignore_errors=True)  # what a killed group left
        metrics_dir.mkdir(mode=0o700)
        env[MULTIPROCESS_DIR_VARIABLE] = str(metrics_dir)
        host = settings.metrics_host or settings.grpc_host or grpc_host(listen_addr)
        _serve_metrics(metrics_dir, host, settings.metrics_port)
    workers: list[_Worker] = []
    tasks: list[asyncio.Future[Any]] = []
    try:
        group_id = random.SystemRandom().getrandbits(63)
        for index in range(count):
            workers.append(await _start(index, count, group_id, worker_argv, env))
        log.info("worker group starting", workers=count)
        exits = {asyncio.ensure_future(w.process.wait()): w for w in workers}
        ready = [asyncio.ensure_future(_read_byte(w.ready_fd)) for w in workers]
        stopped = asyncio.ensure_future(stop.wait())
        tasks += [*exits, *ready, stopped]
        if await _all_ready(ready, [*exits, stopped]):
            for worker in workers:
                with contextlib.suppress(BrokenPipeError):  # it just exited: seen below
                    os.write(worker.group_fd, _GO)
            log.info("worker group ready", workers=count)
            await asyncio.wait([*exits, stopped], return_when=asyncio.FIRST_COMPLETED)
        crashed = not stop.is_set()
        if crashed:
            ended = {w.index: e.result() for e, w in exits.items() if e.done()}
            log.error("a worker exited; stopping the group so that it is restarted whole", exit_codes=ended)
        await _stop(workers, settings.grace_seconds + _EXIT_SECONDS)
        return 1 if crashed else 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            os.close(worker.ready_fd)
            os.close(worker.group_fd)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def _all_ready(ready: Sequence[asyncio.Future[bytes]], ends: Sequence[asyncio.Future[Any]]) -> bool:
    """Whether every worker reported ready before one of `ends` (a worker's exit, stop) came."""
    waiting: set[asyncio.Future[Any]] = {*ready, *ends}
    while any(not r.done() for r in ready):
        done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if any(d in ends for d in done) or any(d.result() != _READY for d in done):
            return False  # a worker closed its pipe unready: it is exiting
    return True


async def _start(
    index: int, count: int, group_id: int, worker_argv: Callable[[WorkerLink], Sequence[str]], env: dict[str, str]
) -> _Worker:
    ready_r, ready_w = os.pipe()
    group_r, group_w = os.pipe()
    link = WorkerLink(index, count, group_id, ready_w, group_r)
    try:
        process = await asyncio.create_subprocess_exec(*worker_argv(link), env=env, pass_fds=(ready_w, group_r))
    finally:
        os.close(ready_w)  # the worker's ends: held by the worker only, so its exit or the parent's shows
        os.close(group_r)
    return _Worker(index, process, ready_r, group_w)


async def _stop(workers: list[_Worker], within: float) -> None:
    """SIGTERM every worker still running, SIGKILL those still running after `within` seconds."""
    running = [w.process for w in workers if w.process.returncode is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    if running:
        _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in running], timeout=within)
        for process in running:
            if process.returncode is None:
                log.warning("a worker did not stop in time; killing it", pid=process.pid)
                process.kill()
        if late:
            await asyncio.wait(late)


def _serve_metrics(directory: Path, host: str, port: int) -> None:
    """Serve the sum of every worker's samples on `host`:`port`, from a background thread."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]  # untyped in the library
    start_http_server(port, addr=host, registry=registry)
