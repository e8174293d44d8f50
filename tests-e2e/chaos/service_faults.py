"""Service faults under load, through the whole stack as `orqen up` runs it: the rows of the fault table.

One run: a stack with its own embedded Postgres, Redis and NATS (never the machine's) and fake
providers; a load over the three ingresses; the faults of `faults.schedule`, one after another;
then the records reconciled with what the clients saw. `make chaos` runs it at full size
(tests-e2e/chaos/run.py), `make test` a bounded one (tests-e2e/tests/test_chaos.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from accounts import new_account_key
from chaos.faults import Fault, SupervisorLog, run_faults, schedule
from chaos.load import HANG_SECONDS, Answer, Load
from chaos.reconcile import Reconciliation, reconcile
from chaos.table import Row
from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer
from harness import ANTHROPIC_KEY, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER, OPENAI_KEY, stack_env
from orqen_stack.config import StackConfig
from orqen_stack.supervisor import Stack


@dataclass
class ChaosRun:
    """Everything one run saw: the answers, the faults (with their timings) and the reconciliation."""

    answers: list[Answer]
    faults: list[Fault]
    reconciliation: Reconciliation

    def answer(self, request_id: str) -> Answer | None:
        return next((a for a in self.answers if a.request_id == request_id), None)

    def window(self, fault: Fault) -> list[Answer]:
        """The answers that came from the fault until the next one (or the end of the load).

        By when they came, not when they were sent: a request in flight when a service is
        killed is that kill's to answer for.
        """
        later = [f.started for f in self.faults if f.started > fault.started]
        end = min(later, default=float("inf"))
        return [a for a in self.answers if fault.started <= a.answered_at < end]

    def rows(self) -> list[Row]:
        rows = [self._row(fault) for fault in self.faults]
        rec = self.reconciliation
        agreed = "every figure agrees with the log" if not rec.disagreements else "; ".join(rec.disagreements)
        rows.append(
            Row(
                f"Reconciliation of {len(self.answers)} requests: rollups, sessions, billing",
                f"{rec.logged} logged once each; {agreed}",
                len(rec.lost) + len(rec.doubled),
                None,
            )
        )
        return rows

    def _row(self, fault: Fault) -> Row:
        answers = self.window(fault)
        failed = [a for a in answers if not a.ok]
        unrecorded = self.reconciliation.lost | self.reconciliation.doubled
        lost = sum(1 for a in answers if a.ok and a.request_id in unrecorded)
        recovery = None
        if failed:
            recovery = max(0.0, max(a.answered_at for a in failed) - fault.ended)
        return Row(fault.name, describe(answers), lost, recovery)


def describe(answers: list[Answer]) -> str:
    """What clients saw during a window, e.g. '812/840 200; 503 x28 in the SDK shape (slowest 0.03 s)'."""
    ok = [a for a in answers if a.ok]
    parts = [f"{len(ok)}/{len(answers)} 200"]
    by_status: dict[int, list[Answer]] = {}
    for answer in answers:
        if answer.status not in (0, 200):
            by_status.setdefault(answer.status, []).append(answer)
    for status, errors in sorted(by_status.items()):
        shaped = "in the SDK shape" if all(a.sdk_shape for a in errors) else "NOT all in the SDK shape"
        parts.append(f"{status} x{len(errors)} {shaped} (slowest {max(a.seconds for a in errors):.2f} s)")
    if none := [a for a in answers if a.status == 0]:
        slowest = max(a.seconds for a in none)
        parts.append(f"no answer x{len(none)} (connection refused or reset, slowest {slowest:.2f} s)")
    if ended := [a for a in answers if a.status == 200 and a.stream_error]:
        parts.append(f"streams ended by the format's error event x{len(ended)}")
    if cut := [a for a in answers if a.status == 200 and not a.complete and not a.stream_error]:
        parts.append(f"streams cut x{len(cut)}")
    if ok:
        parts.append(f"slowest 200 {max(a.seconds for a in ok):.1f} s")
    hangs = [a for a in answers if a.seconds >= HANG_SECONDS]
    parts.append(f"{len(hangs)} hung ≥ {HANG_SECONDS:.0f} s" if hangs else "no hang")
    return "; ".join(parts)


def _failed(task: asyncio.Task[None]) -> bool:
    return task.cancelled() or task.exception() is not None


@contextmanager
def fake_providers() -> Iterator[dict[str, str]]:
    """The three fake providers, served in threads; yields their base URLs."""
    apps = {
        "openai": FakeOpenAI(OPENAI_KEY).app(),
        "anthropic": FakeAnthropic(ANTHROPIC_KEY).app(),
        "bedrock": FakeBedrock(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER).app(),
    }
    with ExitStack() as servers:
        yield {name: servers.enter_context(BackgroundServer(app)).url for name, app in apps.items()}


def chaos_stack_config(upstream_urls: dict[str, str]) -> StackConfig:
    """A stack that starts its own embedded Postgres, Redis and NATS, whatever ORQEN_TEST_*_URL say.

    Its home (with the Postgres data) is outside pytest's temporary root: Postgres runs as another
    user, and a pytest session starting elsewhere on the machine closes that root, which would
    lock a restarted Postgres out of its data.
    """
    home = Path(tempfile.mkdtemp(prefix="orqen-chaos-"))
    env = stack_env(upstream_urls, home, f"chaos{os.getpid()}")
    for name in ("DATABASE", "REDIS", "NATS"):
        env.pop(f"ORQEN_{name}_URL", None)
    return StackConfig.from_env(env)


async def run_service_faults(
    requests: int, pause_seconds: float, settle_seconds: float, workers: int = 8
) -> tuple[ChaosRun, SupervisorLog]:
    """Load the stack with at least `requests` requests while every fault happens in turn, then reconcile."""
    log = SupervisorLog()
    with fake_providers() as urls, log.capturing():
        config = chaos_stack_config(urls)
        print(f"chaos run: stack home {config.home.root}", flush=True)
        stack = Stack(config)
        info = await stack.start()
        try:
            key = await new_account_key(stack, "chaos")
            faults = schedule(pause_seconds)
            faulting = run_faults(stack, info.edge_url, faults, pause_seconds, settle_seconds, log)
            injecting = asyncio.create_task(faulting)
            load = Load(info.edge_url, key, workers)
            # The load goes on until every fault is done and enough requests were sent, or a fault never healed.
            answers = await load.run(lambda sent: injecting.done() and (sent >= requests or _failed(injecting)))
            await injecting  # a fault that never healed fails the run here
            ok_ids = [a.request_id for a in answers if a.ok]
            async with httpx.AsyncClient(
                base_url=info.edge_url, headers={"authorization": f"Bearer {key}"}, timeout=30
            ) as http:
                reconciliation = await reconcile(http, ok_ids)
        finally:
            await stack.stop()
    shutil.rmtree(config.home.root, ignore_errors=True)  # kept when the run failed, for its logs
    return ChaosRun(answers, faults, reconciliation), log
