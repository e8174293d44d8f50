"""The service faults, injected one at a time into a running stack under load.

Each service is killed with SIGKILL (the supervisor restarts it), the embedded Redis and NATS
are frozen with SIGSTOP and thawed with SIGCONT (orqen_testing.servers.frozen), and the
embedded Postgres is stopped and started again. Only the stack's own embedded servers are touched, never the machine's.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from orqen_stack.supervisor import Stack
from orqen_testing.servers import frozen

SERVICES = ("edge", "optimizer", "dispatch", "accounting", "billing")
# How long a fault may take to heal before the run fails: a restarted optimizer loads its embedding
# model, which took 3 minutes on a 2-core machine shared with other heavy work.
RECOVERY_TIMEOUT = 600.0


@dataclass(slots=True)
class Fault:
    """One fault: what was done, and when (time.monotonic(), like the load's answers)."""

    name: str
    # The service or server the fault hit.
    target: str
    started: float = 0.0
    # When the fault itself ended: the kill, the thaw, Postgres accepting connections again.
    ended: float = 0.0
    # When the stack's /readyz was 200 again.
    ready_at: float = 0.0
    # The supervisor's log lines about the target from the fault on (a kill's restart, with its backoff).
    supervisor_said: list[str] = field(default_factory=list)


class SupervisorLog(io.TextIOBase):
    """Stands in for stderr while the run lasts: the supervisor's lines are kept, and still printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._out = sys.stderr

    def write(self, text: str) -> int:
        self.lines.extend(line for line in text.splitlines() if line.strip())
        return self._out.write(text)

    def flush(self) -> None:
        self._out.flush()

    @contextlib.contextmanager
    def capturing(self) -> Iterator[SupervisorLog]:
        with contextlib.redirect_stderr(self):
            yield self


def schedule(pause_seconds: float) -> list[Fault]:
    """The faults of one run, in order."""
    kills = [Fault(f"SIGKILL {name}", name) for name in SERVICES]
    return [
        *kills,
        Fault(f"Redis frozen (SIGSTOP {pause_seconds:g} s)", "redis"),
        Fault(f"NATS frozen (SIGSTOP {pause_seconds:g} s)", "nats"),
        Fault("Postgres restarted (stop, start)", "postgres"),
    ]


async def inject(stack: Stack, fault: Fault, pause_seconds: float) -> None:
    """Do `fault` to the running stack and return when it has ended (not when the stack has healed)."""
    fault.started = time.monotonic()
    if fault.target in SERVICES:
        os.kill(stack.pids()[fault.target], signal.SIGKILL)
    elif fault.target == "postgres":
        await stack.restart_embedded_postgres()
    else:
        server = stack.embedded(fault.target)
        pid: int = getattr(server, "pid")  # noqa: B009 (Redis and NATS are our children; Postgres is not)
        with frozen(pid):
            await asyncio.sleep(pause_seconds)
    fault.ended = time.monotonic()


async def wait_ready(stack: Stack, edge_url: str, since_pids: dict[str, int], target: str) -> None:
    """Wait until the killed service runs again (a new pid) and the edge's /readyz is 200."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            restarted = target not in SERVICES or stack.pids().get(target, since_pids[target]) != since_pids[target]
            if restarted:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{edge_url}/readyz")).status_code == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"the stack was not ready within {RECOVERY_TIMEOUT:.0f} s of: {target}")


async def run_faults(
    stack: Stack, edge_url: str, faults: list[Fault], pause_seconds: float, settle_seconds: float, log: SupervisorLog
) -> None:
    """Inject each fault in turn, each after the stack has healed from the last and served a while."""
    await asyncio.sleep(settle_seconds)
    for fault in faults:
        pids = stack.pids()
        first_line = len(log.lines)
        await inject(stack, fault, pause_seconds)
        await wait_ready(stack, edge_url, pids, fault.target)
        fault.ready_at = time.monotonic()
        await asyncio.sleep(settle_seconds)
        fault.supervisor_said = [line for line in log.lines[first_line:] if fault.target in line]
