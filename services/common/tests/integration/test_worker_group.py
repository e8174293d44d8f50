"""A worker group of real processes on one real port: it opens once every worker is ready and lives and dies whole."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest

from orqen_common.healthcheck import health_status
from orqen_stack.procs import free_port

SERVICE = Path(__file__).with_name("group_service.py")
POLLS = 1200  # of 0.05 s: a bound on waiting that no healthy run comes near, never a timing assertion


@dataclass
class Group:
    parent: subprocess.Popen[bytes]
    addr: str
    port: int
    directory: Path

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.parent.pid).children()

    def listening_pids(self) -> set[int]:
        return {
            worker.pid
            for worker in self.workers()
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in worker.net_connections("inet"))
        }


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ORQEN_GRPC_HOST", "ORQEN_METRICS_HOST")}
    env.update(
        ORQEN_OPTIMIZER_ADDR=f"127.0.0.1:{port}",
        ORQEN_INTERNAL_TOKEN="group-test-token",
        ORQEN_METRICS_PORT="0",
        ORQEN_LOG_LEVEL="WARNING",
        ORQEN_GRACE_SECONDS="2",
        GROUP_TEST_WORKERS="2",
        GROUP_TEST_DIR=str(tmp_path),
    )
    with (tmp_path / "group.log").open("ab") as log:
        parent = subprocess.Popen([sys.executable, str(SERVICE)], env=env, stdout=log, stderr=log)
    started = Group(parent, f"127.0.0.1:{port}", port, tmp_path)
    try:
        yield started
    finally:
        workers = started.workers() if parent.poll() is None else []
        parent.kill()
        parent.wait()
        for worker in workers:
            worker.kill()


async def until(condition: Callable[[], object], group: Group) -> None:
    """Poll `condition()` (sync or async) until true; fail with the group's log if it never is."""
    for _ in range(POLLS):
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError((group.directory / "group.log").read_text())


async def serving(group: Group) -> bool:
    async with grpc.aio.insecure_channel(group.addr) as channel:
        return await health_status(channel) == "ok"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def release_and_serve(group: Group) -> None:
    await until(lambda: (group.directory / "built-0").exists(), group)
    (group.directory / "release").touch()
    await until(lambda: serving(group), group)


async def test_the_port_opens_once_every_worker_is_ready_and_every_worker_listens_on_it(group: Group) -> None:
    await until(lambda: (group.directory / "built-0").exists(), group)
    # Worker 0 is ready, worker 1 still loading: nobody listens yet, so no caller meets a worker that cannot serve.
    assert not port_open(group.port) and len(group.workers()) == 2
    (group.directory / "release").touch()
    await until(lambda: serving(group), group)
    assert group.listening_pids() == {w.pid for w in group.workers()} and len(group.listening_pids()) == 2
    # One CPU's worth each: no native thread pools of their own to contend with the other workers.
    assert all(w.environ()["OPENBLAS_NUM_THREADS"] == "1" for w in group.workers())


async def test_a_worker_that_dies_takes_the_group_down_for_its_supervisor_to_restart(group: Group) -> None:
    await release_and_serve(group)
    first, second = group.workers()
    first.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(group.parent.wait, 60) == 1
    _, alive = await asyncio.to_thread(psutil.wait_procs, [second], 60)
    assert alive == []
    assert not port_open(group.port)


async def test_a_killed_parent_takes_its_workers_with_it(group: Group) -> None:
    await release_and_serve(group)
    workers = group.workers()
    group.parent.send_signal(signal.SIGKILL)
    gone, alive = await asyncio.to_thread(psutil.wait_procs, workers, 60)
    assert alive == [] and len(gone) == 2


async def test_sigterm_stops_every_worker_and_the_parent_cleanly(group: Group) -> None:
    await release_and_serve(group)
    workers = group.workers()
    group.parent.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(group.parent.wait, 60) == 0
    _, alive = await asyncio.to_thread(psutil.wait_procs, workers, 60)
    assert alive == [] and "killing it" not in (group.directory / "group.log").read_text()
