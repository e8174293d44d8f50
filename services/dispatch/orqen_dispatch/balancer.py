"""Load balancing: which deployment of a logical model takes a request, and which are out.

A logical model (orqen_common.deployments.BalancedModel) lists deployments. For each request
`Balancer.order` puts them in the order the Dispatcher tries them, one target each:

1. a deployment whose cooling period just ended, so that one real request probes it back;
2. the healthy ones, ordered by the model's strategy:
   - weighted (default): a weighted random order, so each deployment is first in a share of
     requests equal to its share of the weights (Efraimidis-Spirakis keys, u ** (1 / weight));
   - least_inflight: fewest calls under way relative to its weight, ties by weight;
   - lowest_latency: lowest measured latency (EWMA over every replica, orqen_dispatch.latency,
     read from Redis at most once a second per model, so requests rarely wait on it),
     deployments never measured first so each gets measured, ties by weight;
3. the ejected ones, which the Dispatcher records as skipped ("deployment ejected").

Each deployment's health is kept per dispatch process, like the circuit breakers: a call
that fails with a deployment's fault (unreachable, timeout, 5xx, 429, 401/403/404) ejects it
for a cooling period that doubles with each failed probe, up to a cap (a 429's Retry-After,
when longer, is honoured). When it ends, one call goes through as the probe: success makes
the deployment healthy again, failure ejects it for the next, longer period. The in-flight
counts are per process too (a replica knows only its own calls).

Rate limits are per deployment and shared by every replica: requests and tokens per minute
in Redis buckets, checked by the limits script the edge's rate limits run too (orqen_common.limit_scripts). A
deployment over its budget is skipped with a 429 attempt and the next one is tried; tokens
are charged once the call reports them. Redis trouble admits the call (fail open).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orqen.v1 import dispatch_pb2
from orqen_common.canonical import TokenUsage
from orqen_common.deployments import BalancedModel, Deployment
from orqen_common.limit_scripts import LIMITS_SCRIPT
from orqen_dispatch.latency import LatencyStats, ModelStats
from orqen_dispatch.providers.base import UpstreamError

log = structlog.get_logger(__name__)

EJECTED, PROBING, HEALTHY = "ejected", "probing", "healthy"
DEPLOYMENT_EJECTED = "deployment ejected"
DEPLOYMENT_PROBING = "deployment probing"
DEPLOYMENT_RATE_LIMITED = "deployment rate limit"
_WINDOW_MS = 60_000
_KEY_PREFIX = "orqen:deployment:"
LATENCY_REFRESH_S = 1.0
_REDIS_DEADLINE_SECONDS = 0.5  # past this a call goes on unlimited rather than wait on Redis


def ejects(status: int) -> bool:
    """Whether a call's status says the deployment cannot serve now (the others may)."""
    return status in (0, 401, 403, 404, 408, 429) or status >= 500


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    """How long a failing deployment stays out: base_s, doubled per failed probe, at most max_s."""

    base_s: float = 5.0
    max_s: float = 300.0

    def cooling_s(self, ejections: int) -> float:
        return min(self.max_s, self.base_s * 2.0 ** max(ejections - 1, 0))


@dataclass(slots=True)
class _Health:
    """One deployment in this process: its ejection and its calls under way."""

    ejections: int = 0  # in a row, each failed probe included; 0 while healthy
    ejected_until: float = 0.0  # monotonic clock; meaningful while ejections > 0
    probe_running: bool = False
    in_flight: int = 0


@dataclass(eq=False)
class DeploymentSlot:
    """One request's use of one deployment: what a `Target` of a balanced model carries.

    The Dispatcher calls `admit` before each call, then `finish` with its status, or
    `release` when the call ended without a verdict (cancelled, refused by a translator).
    """

    balancer: Balancer
    scope: str  # "operator", or the account whose deployment it is
    model: str  # the logical model
    deployment: Deployment
    _started: float | None = field(default=None, init=False)  # perf_counter() while admitted
    _probe: bool = field(default=False, init=False)

    @property
    def name(self) -> str:
        return self.deployment.name

    @property
    def key(self) -> str:
        """Names the deployment among every scope's: its health, its stats and its buckets."""
        return f"{self.scope}:{self.model}:{self.deployment.name}"

    async def admit(self) -> UpstreamError | None:
        """None when the call may go (counted in flight); otherwise why it is skipped."""
        return await self.balancer.admit(self)

    def finish(self, status: int, retry_after: float | None = None) -> None:
        """The admitted call ended with `status` (200 when it answered)."""
        self.balancer.finish(self, status, retry_after)

    def release(self) -> None:
        """The admitted call ended without saying whether the deployment works."""
        self.balancer.release(self)


class Balancer:
    """Orders a balanced model's deployments per request and keeps their health (module docstring).

    `rng`, `clock` (monotonic: cooling periods) and `wall` (Unix time, shared by replicas for
    rate limits) are injectable so tests control chance and time; latency is always measured
    on the real clock.
    """

    def __init__(
        self,
        redis: Redis,
        latency: LatencyStats,
        policy: EjectionPolicy,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._latency = latency
        self._policy = policy
        self._rng = rng or random.Random()
        self._clock = clock
        self._wall = wall
        self._health: dict[str, _Health] = {}
        self._latency_cache: dict[str, tuple[float, Mapping[str, ModelStats]]] = {}
        self._buckets = redis.register_script(LIMITS_SCRIPT)
        self._background: set[asyncio.Task[Any]] = set()

    # --- choosing ------------------------------------------------------------------------

    async def order(self, scope: str, model: BalancedModel) -> list[DeploymentSlot]:
        """The deployments of `model` in the order to try them for one request."""
        slots = [DeploymentSlot(self, scope, model.model, d) for d in model.deployments]
        probe, healthy, out = [], [], []
        for slot in slots:
            state = self._state(slot.key)
            if state == HEALTHY:
                healthy.append(slot)
            elif state == PROBING and not self._health[slot.key].probe_running:
                probe.append(slot)
            else:
                out.append(slot)
        keys = {slot.key: self._weight_key(slot) for slot in healthy}
        if model.strategy == "least_inflight":
            healthy.sort(key=lambda s: (self._in_flight(s.key) / s.deployment.weight, -keys[s.key]))
        elif model.strategy == "lowest_latency":
            measured = await self._latencies(scope, model)
            healthy.sort(key=lambda s: (_latency_rank(measured.get(stats_name(s.key))), -keys[s.key]))
        else:
            healthy.sort(key=lambda s: -keys[s.key])
        out.sort(key=lambda s: self._health[s.key].ejected_until)
        return probe + healthy + out

    async def _latencies(self, scope: str, model: BalancedModel) -> Mapping[str, ModelStats]:
        """The deployments' measured figures, read again once LATENCY_REFRESH_S has passed."""
        key = f"{scope}:{model.model}"
        cached = self._latency_cache.get(key)
        if cached is not None and self._clock() - cached[0] < LATENCY_REFRESH_S:
            return cached[1]
        names = (stats_name(f"{key}:{d.name}") for d in model.deployments)
        measured = await self._latency.snapshot(names)
        self._latency_cache[key] = (self._clock(), measured)
        return measured

    def _weight_key(self, slot: DeploymentSlot) -> float:
        # The largest u ** (1/w) comes first with probability w / sum(w) (Efraimidis-Spirakis).
        return float(self._rng.random() ** (1.0 / slot.deployment.weight))

    # --- health --------------------------------------------------------------------------

    def _state(self, key: str) -> str:
        health = self._health.get(key)
        if health is None or health.ejections == 0:
            return HEALTHY
        return EJECTED if self._clock() < health.ejected_until else PROBING

    def _in_flight(self, key: str) -> int:
        health = self._health.get(key)
        return health.in_flight if health is not None else 0

    async def admit(self, slot: DeploymentSlot) -> UpstreamError | None:
        """See `DeploymentSlot.admit`."""
        health = self._health.setdefault(slot.key, _Health())
        state = self._state(slot.key)
        if state == EJECTED:
            wait = health.ejected_until - self._clock()
            return UpstreamError(503, DEPLOYMENT_EJECTED, retry_after=wait)
        if state == PROBING and health.probe_running:
            return UpstreamError(503, DEPLOYMENT_PROBING, retry_after=1.0)
        refusal = await self._spend_request(slot)
        if refusal is not None:
            return refusal
        if state == PROBING:
            health.probe_running = slot._probe = True
        health.in_flight += 1
        slot._started = time.perf_counter()
        return None

    def finish(self, slot: DeploymentSlot, status: int, retry_after: float | None = None) -> None:
        """See `DeploymentSlot.finish`."""
        started = self._end(slot)
        if started is None:
            return
        health = self._health[slot.key]
        ok = not ejects(status)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._latency.record(stats_name(slot.key), elapsed_ms, ok)
        if ok:
            if health.ejections:
                log.info("deployment healthy again", deployment=slot.key)
            health.ejections, health.probe_running = 0, False
            return
        if health.ejections and not slot._probe:
            return  # a call that started before the ejection says nothing new
        health.ejections += 1
        cooling = self._policy.cooling_s(health.ejections)
        if retry_after is not None and status == 429:
            cooling = max(cooling, min(retry_after, self._policy.max_s))
        health.ejected_until = self._clock() + cooling
        health.probe_running = False
        log.warning("deployment ejected", deployment=slot.key, status=status, cooling_s=cooling)

    def release(self, slot: DeploymentSlot) -> None:
        """See `DeploymentSlot.release`."""
        if self._end(slot) is not None and slot._probe:
            self._health[slot.key].probe_running = False

    def _end(self, slot: DeploymentSlot) -> float | None:
        """Count the admitted call out of flight; its start, or None when it was not admitted."""
        started, slot._started = slot._started, None
        if started is not None:
            self._health[slot.key].in_flight -= 1
        return started

    # --- rate limits ---------------------------------------------------------------------

    async def _spend_request(self, slot: DeploymentSlot) -> UpstreamError | None:
        """Take one request of the deployment's rpm, if one and a token of its tpm are free."""
        plan = [(kind, limit, 1, 1 if kind == "requests" else 0) for kind, limit in _budgets(slot.deployment)]
        if not plan:
            return None
        reply = await self._run_buckets(slot, plan, enforce=True)
        if reply is None or reply[0]:
            return None
        waits = [max(0.0, used + 1 - limit) * 60 / limit for (_, limit, _, _), used in zip(plan, reply[1], strict=True)]
        limits = ", ".join(f"{limit} {kind}" for kind, limit, _, _ in plan)
        return UpstreamError(429, f"{DEPLOYMENT_RATE_LIMITED} ({limits} per minute)", max(waits))

    def charge(self, slot: DeploymentSlot, usage: TokenUsage) -> None:
        """Spend the tokens a call used from the deployment's tpm; off the request's path."""
        tokens = usage.prompt + usage.output
        if slot.deployment.tpm > 0 and tokens > 0:
            plan = [("tokens", slot.deployment.tpm, 0, tokens)]
            self._in_background(self._run_buckets(slot, plan, enforce=False))

    async def _run_buckets(
        self, slot: DeploymentSlot, plan: Sequence[tuple[str, int, int, int]], *, enforce: bool
    ) -> tuple[bool, list[float]] | None:
        """The limits script's buckets over (kind, limit, need, cost); None when Redis did not answer.

        Enforcing is the script's "admit" (nothing is spent unless every bucket has room for its
        need), otherwise its "charge"; buckets hold no reservations, so the token is empty.
        """
        # The scope is the hash tag: one script's keys share a Redis Cluster slot.
        keys = [f"{_KEY_PREFIX}{{{slot.scope}}}:{slot.model}:{slot.name}:{kind}" for kind, _, _, _ in plan]
        args: list[str | int] = [round(self._wall() * 1000), _WINDOW_MS, "admit" if enforce else "charge", "", 0, 0]
        args += [f"b {limit} {need} {cost} 0" for _, limit, need, cost in plan]
        try:
            async with asyncio.timeout(_REDIS_DEADLINE_SECONDS):
                admitted, *states = await self._buckets(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as err:
            log.warning("deployment rate limits unavailable, call not limited", error=repr(err))
            return None
        return bool(admitted), [float(used) for used in states[0::3]]  # each bucket: used, reserved, flag

    def _in_background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)  # a reference, so the task is not collected before it runs
        task.add_done_callback(self._background.discard)

    # --- status --------------------------------------------------------------------------

    async def status(self, scope: str, source: str, model: BalancedModel) -> list[dispatch_pb2.DeploymentStatus]:
        """The deployments of `model` as /v1/account/routing/models/status shows them."""
        keys = [f"{scope}:{model.model}:{d.name}" for d in model.deployments]
        measured: Mapping[str, ModelStats] = await self._latency.snapshot(stats_name(k) for k in keys)
        now, wall = self._clock(), self._wall()
        statuses = []
        for deployment, key in zip(model.deployments, keys, strict=True):
            health = self._health.get(key) or _Health()
            state = self._state(key)
            stats = measured.get(stats_name(key)) or ModelStats()
            statuses.append(
                dispatch_pb2.DeploymentStatus(
                    name=deployment.name,
                    provider=deployment.provider,
                    model=deployment.model,
                    region=deployment.region,
                    weight=deployment.weight,
                    rpm=deployment.rpm,
                    tpm=deployment.tpm,
                    state=state,
                    ejected_until=_timestamp(wall + health.ejected_until - now) if state == EJECTED else None,
                    in_flight=health.in_flight,
                    latency_ms=stats.latency_ms,
                    success_rate=stats.success_rate,
                    calls=stats.calls,
                    source=source,
                )
            )
        return statuses


def _timestamp(unix_seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(unix_seconds * 1e9))
    return stamp


def stats_name(key: str) -> str:
    """The name a deployment's latency and success figures are kept under (orqen_dispatch.latency)."""
    return f"deployment:{key}"


def _latency_rank(stats: ModelStats | None) -> float:
    """Never measured (or never answered) first, so every deployment gets measured; then the fastest."""
    if stats is None or stats.latency_ms <= 0:
        return -math.inf
    return stats.latency_ms


def _budgets(deployment: Deployment) -> list[tuple[str, int]]:
    return [(kind, limit) for kind, limit in (("requests", deployment.rpm), ("tokens", deployment.tpm)) if limit > 0]
