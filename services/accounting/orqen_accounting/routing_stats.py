"""What the request log says about routing: recent decisions, recall calibration, insights.

Calibration uses A/B control traffic only: requests the optimizer forwarded unpruned
(routing mode "<mode>_ab_ctrl") while recording the decision it would have made. The
tools the model then called are the ground truth the decision is scored against: it
recalled a request when every called tool was within its K (and, with the learned part,
within its K or among the tools learned tool usage added); and for the router's scores
to be calibrated, the share of candidates called should rise with their score.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson

from orqen.v1 import accounting_pb2, optimizer_pb2
from orqen_accounting import histogram
from orqen_accounting.stored_json import from_json
from orqen_common.routing_modes import AB_CONTROL_SUFFIX

BUCKETS = 10  # equal score buckets over [0, 1]: the optimizer's fused scores lie there
# Most recent control requests read for one calibration: enough for shares to within about a
# percentage point, and a bounded cost (~10 ms a thousand samples) however busy the account is.
MAX_CONTROL_SAMPLES = 2_000
# A model is "fastest" only on enough successful requests to make its median mean something.
FASTEST_MIN_SUCCESSES = 3


@dataclass(frozen=True, slots=True)
class ControlSample:
    """One A/B control request: the decision the router would have made, and what was called."""

    mode: str
    k: int
    ranked: Sequence[tuple[str, float]]  # candidates, best first, with their scores
    called: Sequence[str]
    learned: Sequence[str] = ()  # tools the router added beyond K from learned tool usage
    displaced: Sequence[str] = ()  # tools of K left out to make room for them

    @property
    def recalled(self) -> bool:
        """Whether the router's own K held every called tool (recall without the learned part)."""
        kept = {name for name, _ in self.ranked[: self.k]}
        return all(name in kept for name in self.called)

    @property
    def recalled_with_learning(self) -> bool:
        """Whether its K, less what made room for the learned additions, and those held every called tool."""
        kept = {name for name, _ in self.ranked[: self.k]}.difference(self.displaced).union(self.learned)
        return all(name in kept for name in self.called)


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    recalled: int = 0
    recalled_with_learning: int = 0
    learned: int = 0  # requests to which learning added a tool

    def add(self, sample: ControlSample) -> None:
        self.requests += 1
        self.recalled += sample.recalled
        self.recalled_with_learning += sample.recalled_with_learning
        self.learned += bool(sample.learned)

    @property
    def recall(self) -> float:
        return self.recalled / self.requests if self.requests else 0.0

    @property
    def recall_with_learning(self) -> float:
        return self.recalled_with_learning / self.requests if self.requests else 0.0


@dataclass(slots=True)
class Calibration:
    overall: _Tally = field(default_factory=_Tally)
    by_mode: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    k_total: int = 0
    unranked_calls: int = 0
    candidates: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    called: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    @classmethod
    def of(cls, samples: Iterable[ControlSample]) -> Calibration:
        calibration = cls()
        candidates, called_counts, top = calibration.candidates, calibration.called, BUCKETS - 1
        for sample in samples:
            calibration.overall.add(sample)
            calibration.by_mode[sample.mode].add(sample)
            calibration.k_total += sample.k
            called = set(sample.called)
            ranked_names = {name for name, _ in sample.ranked}
            calibration.unranked_calls += len(called - ranked_names)
            # The innermost loop of a page view (a few hundred thousand candidates at most): inlined.
            for name, score in sample.ranked:
                bucket = int(score * BUCKETS)
                bucket = top if bucket > top else 0 if bucket < 0 else bucket
                candidates[bucket] += 1
                if name in called:
                    called_counts[bucket] += 1
        return calibration

    def buckets(self) -> list[accounting_pb2.CalibrationBucket]:
        return [
            accounting_pb2.CalibrationBucket(
                score_min=i / BUCKETS,
                score_max=(i + 1) / BUCKETS,
                candidates=self.candidates[i],
                called=self.called[i],
                called_share=self.called[i] / self.candidates[i] if self.candidates[i] else 0.0,
            )
            for i in range(BUCKETS)
        ]

    def modes(self) -> list[accounting_pb2.ModeRecall]:
        return [
            accounting_pb2.ModeRecall(mode=mode, control_requests=tally.requests, recall=tally.recall)
            for mode, tally in sorted(self.by_mode.items())
        ]

    @property
    def mean_k(self) -> float:
        return self.k_total / self.overall.requests if self.overall.requests else 0.0


class RoutingStats:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # Calibrations under way, by (account, days): the dashboard's routing page asks for the
        # calibration and for the insights (which need it too) at once; they share one reading.
        self._calibrating: dict[tuple[str, int], asyncio.Future[Calibration]] = {}

    async def traces(self, account_id: str, limit: int) -> list[accounting_pb2.RoutingTraceRecord]:
        rows = await self._pool.fetch(
            """
            SELECT request_id, created_at, model_requested, model_used, trace, tools_called FROM requests
            WHERE account_id = $1::uuid AND trace IS NOT NULL
            ORDER BY created_at DESC LIMIT $2
            """,
            account_id,
            limit,
        )
        records = []
        for row in rows:
            record = accounting_pb2.RoutingTraceRecord(
                request_id=row["request_id"],
                model_requested=row["model_requested"],
                model_used=row["model_used"],
                trace=from_json(row["trace"], optimizer_pb2.RoutingTrace()),
                tools_called=row["tools_called"],
            )
            record.created_at.FromDatetime(row["created_at"])
            records.append(record)
        return records

    async def calibration(self, account_id: str, days: int) -> Calibration:
        key = (account_id, days)
        running = self._calibrating.get(key)
        if running is None:
            running = self._calibrating[key] = asyncio.ensure_future(self._calibrate(account_id, days))
            running.add_done_callback(lambda _: self._calibrating.pop(key, None))
        # Shielded: one caller giving up does not cancel the reading another caller waits for.
        return await asyncio.shield(running)

    async def _calibrate(self, account_id: str, days: int) -> Calibration:
        rows = await self._pool.fetch(
            r"""
            SELECT routing, trace, tools_called FROM requests
            WHERE account_id = $1::uuid AND routing LIKE '%\_ab\_ctrl' AND created_at >= $2
                AND trace IS NOT NULL AND cardinality(tools_called) > 0
            ORDER BY created_at DESC LIMIT $3
            """,
            account_id,
            _since(days),
            MAX_CONTROL_SAMPLES,
        )
        return Calibration.of(_sample(row) for row in rows)

    async def models(self, account_id: str, days: int) -> list[accounting_pb2.ModelUsage]:
        """Per model used in the period: requests, success rate and median latency, from the daily
        rollups (the raw log of a busy account holds far too many rows to read for a page view)."""
        first_day = _since(days).date()
        rows = await self._pool.fetch(
            """
            SELECT model, provider, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors
            FROM usage_daily
            WHERE account_id = $1::uuid AND day >= $2 AND provider <> ''
            GROUP BY model, provider
            ORDER BY requests DESC, model
            LIMIT 100
            """,
            account_id,
            first_day,
        )
        buckets = await self._pool.fetch(
            """
            SELECT model, provider, bucket, sum(requests)::bigint AS n FROM latency_daily
            WHERE account_id = $1::uuid AND day >= $2 AND provider <> ''
            GROUP BY model, provider, bucket
            """,
            account_id,
            first_day,
        )
        latencies: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
        for b in buckets:
            latencies[b["model"], b["provider"]].append((b["bucket"], b["n"]))
        return [
            accounting_pb2.ModelUsage(
                model=r["model"],
                provider=r["provider"],
                requests=r["requests"],
                success_rate=1.0 - r["errors"] / r["requests"] if r["requests"] else 0.0,
                p50_ms=histogram.percentile(histogram.counts(latencies[r["model"], r["provider"]]), 0.5),
            )
            for r in rows
        ]


def insights(
    days: int, calibration: Calibration, models: Sequence[accounting_pb2.ModelUsage]
) -> accounting_pb2.RoutingInsights:
    """The picks of the period: best-recall routing mode, fastest model, most-used model."""
    modes = calibration.modes()
    result = accounting_pb2.RoutingInsights(days=days, modes=modes, models=models)
    if modes:
        result.best_recall.CopyFrom(max(modes, key=lambda m: (m.recall, m.control_requests)))
    if models:
        result.most_used.CopyFrom(models[0])  # ordered by requests
    measured = [m for m in models if round(m.requests * m.success_rate) >= FASTEST_MIN_SUCCESSES]
    if measured:
        result.fastest.CopyFrom(min(measured, key=lambda m: m.p50_ms))
    return result


def _sample(row: asyncpg.Record) -> ControlSample:
    trace = orjson.loads(row["trace"])
    return ControlSample(
        mode=row["routing"].removesuffix(AB_CONTROL_SUFFIX),
        k=int(trace.get("k", 0)),
        ranked=[(c.get("name", ""), float(c.get("score", 0.0))) for c in trace.get("candidates", [])],
        called=row["tools_called"],
        learned=[t.get("name", "") for t in trace.get("learned", [])],
        displaced=trace.get("displaced", []),
    )


def _since(days: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
