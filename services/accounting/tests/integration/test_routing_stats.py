"""Routing traces, recall calibration and insights computed from real request rows in Postgres."""

import asyncio
import datetime as dt
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from orqen.v1 import accounting_pb2, common_pb2, dispatch_pb2, events_pb2, optimizer_pb2
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.routing_stats import BUCKETS, RoutingStats

from .conftest import Connect

SEMANTIC = [("search_flights", 0.95), ("book_hotel", 0.55), ("get_weather", 0.15)]
KEYWORD = [("convert_currency", 0.8), ("get_time", 0.3)]
_clock = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)


def completed(
    account_id: str,
    *,
    model: str = "gpt-4o-mini",
    upstream_ms: float = 100.0,
    status: int = 200,
    routing: str = "",
    k: int = 0,
    ranked: list[tuple[str, float]] | None = None,
    called: list[str] | None = None,
    attempts: list[common_pb2.Attempt] | None = None,
) -> events_pb2.RequestCompleted:
    """A request event as the edge publishes it, each one a second newer than the last."""
    global _clock
    _clock += dt.timedelta(seconds=1)
    created = Timestamp()
    created.FromDatetime(_clock)
    trace = optimizer_pb2.RoutingTrace(
        intent="book a trip",
        mode=routing.removesuffix("_ab_ctrl"),
        k=k,
        k_reason="score gap after rank 2",
        candidates=[optimizer_pb2.ToolCandidate(name=n, score=s) for n, s in ranked or []],
    )
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(
            request_id=f"req_{uuid.uuid4().hex}", account_id=account_id, ingress="openai"
        ),
        created_at=created,
        latency_ms=upstream_ms,
        model_requested=model,
        status=status,
        dispatch=dispatch_pb2.DispatchSummary(
            provider=model.split("-")[0], model=model, upstream_ms=upstream_ms, attempts=attempts or []
        ),
        plan=optimizer_pb2.PlanStats(routing=routing),
        trace=trace,
        tools_called=called or [],
    )


async def new_account(repo: AccountingRepository) -> str:
    account: dict[str, Any] = dict(await repo.ensure_account(f"routing-{uuid.uuid4().hex[:8]}"))
    return str(account["id"])


@pytest.fixture
async def alice(repo: AccountingRepository, record: Any) -> str:
    account_id = await new_account(repo)
    semantic_ab = {"routing": "semantic_ab_ctrl", "k": 2, "ranked": SEMANTIC}
    events = [
        # A/B control traffic: everything was forwarded; the trace is what the router would have kept.
        completed(account_id, upstream_ms=100, called=["search_flights"], **semantic_ab),
        completed(account_id, upstream_ms=200, called=["search_flights", "book_hotel"], **semantic_ab),
        completed(account_id, upstream_ms=300, called=["get_weather"], **semantic_ab),
        completed(
            account_id, upstream_ms=400, routing="keyword_ab_ctrl", k=1, ranked=KEYWORD, called=["convert_currency"]
        ),
        # Routed traffic: traced, but the model only saw the kept tools, so it measures nothing.
        completed(account_id, upstream_ms=500, routing="semantic", k=2, ranked=SEMANTIC, called=["search_flights"]),
        *(completed(account_id, model="claude-haiku-4-5", upstream_ms=ms) for ms in (50, 60, 70)),
        completed(account_id, model="claude-haiku-4-5", upstream_ms=5000, status=502),
        *(completed(account_id, model="gpt-5-nano", upstream_ms=ms) for ms in (10, 20)),
    ]
    await record(events)
    return account_id


async def test_calibration_scores_the_routers_would_be_decisions_against_the_tools_called(
    alice: str, connect: Connect
) -> None:
    async with connect() as accounting:
        calibration = await accounting.GetRoutingCalibration(accounting_pb2.RoutingPeriod(account_id=alice))
    assert calibration.days == 7
    assert (calibration.policy.k_floor, calibration.policy.ab_control_share) == (3, 0.05)  # the defaults
    assert calibration.control_requests == 4
    assert calibration.recall == pytest.approx(3 / 4)  # get_weather ranked third, beyond K=2
    assert calibration.mean_k == pytest.approx((2 + 2 + 2 + 1) / 4)
    assert calibration.unranked_calls == 0
    buckets = {round(b.score_min * BUCKETS): (b.candidates, b.called) for b in calibration.buckets}
    assert len(calibration.buckets) == BUCKETS
    assert buckets == {0: (0, 0), 1: (3, 1), 2: (0, 0), 3: (1, 0), 4: (0, 0), 5: (3, 1), 6: (0, 0), 7: (0, 0),
                       8: (1, 1), 9: (3, 2)}  # fmt: skip
    shares = {round(b.score_min * BUCKETS): b.called_share for b in calibration.buckets}
    assert shares[9] == pytest.approx(2 / 3) and shares[8] == 1.0 and shares[0] == 0.0


async def test_concurrent_calibrations_of_an_account_share_one_reading(alice: str, pool: Any) -> None:
    """The dashboard asks for the calibration and the insights (which need it) at once: one reading."""
    stats = RoutingStats(pool)
    first, second = await asyncio.gather(stats.calibration(alice, 7), stats.calibration(alice, 7))
    assert first is second and first.overall.requests == 4
    later = await stats.calibration(alice, 7)  # a new call once it is done reads again
    assert later is not first and later.overall.requests == 4


async def test_insights_pick_the_best_recall_mode_the_fastest_and_the_most_used_model(
    alice: str, connect: Connect
) -> None:
    async with connect() as accounting:
        insights = await accounting.GetRoutingInsights(accounting_pb2.RoutingPeriod(account_id=alice, days=30))
    assert insights.days == 30
    assert (insights.best_recall.mode, insights.best_recall.recall) == ("keyword", 1.0)
    assert {m.mode: m.recall for m in insights.modes} == {"keyword": 1.0, "semantic": pytest.approx(2 / 3)}
    assert (insights.most_used.model, insights.most_used.requests) == ("gpt-4o-mini", 5)
    # Medians come from the latency histograms: exact to a bucket (9%).
    assert insights.most_used.p50_ms == pytest.approx(300.0, rel=0.09)
    # gpt-5-nano is faster but has only two successes: too few to call it the fastest.
    assert (insights.fastest.model, insights.fastest.p50_ms) == ("claude-haiku-4-5", pytest.approx(60.0, rel=0.09))
    haiku = next(m for m in insights.models if m.model == "claude-haiku-4-5")
    assert (haiku.requests, haiku.success_rate) == (4, 0.75)


async def test_traces_are_the_newest_decisions_with_intent_k_reason_and_candidates(
    alice: str, connect: Connect
) -> None:
    async with connect() as accounting:
        found = await accounting.ListRoutingTraces(accounting_pb2.ListRoutingTracesRequest(account_id=alice, limit=2))
    assert [t.trace.mode for t in found.traces] == ["semantic", "keyword"]
    newest = found.traces[0]
    assert newest.trace.intent == "book a trip" and newest.trace.k == 2
    assert newest.trace.k_reason == "score gap after rank 2"
    assert [(c.name, c.score) for c in newest.trace.candidates] == SEMANTIC
    assert list(newest.tools_called) == ["search_flights"] and newest.model_used == "gpt-4o-mini"
    assert newest.created_at.seconds > found.traces[1].created_at.seconds


async def test_an_account_without_traffic_gets_empty_figures_not_errors(
    repo: AccountingRepository, connect: Connect
) -> None:
    account_id = await new_account(repo)
    async with connect() as accounting:
        calibration = await accounting.GetRoutingCalibration(accounting_pb2.RoutingPeriod(account_id=account_id))
        insights = await accounting.GetRoutingInsights(accounting_pb2.RoutingPeriod(account_id=account_id))
        traces = await accounting.ListRoutingTraces(accounting_pb2.ListRoutingTracesRequest(account_id=account_id))
    assert calibration.control_requests == 0 and calibration.recall == 0.0
    assert not insights.HasField("best_recall") and not insights.HasField("fastest") and not insights.models
    assert not traces.traces


async def test_one_account_never_sees_anothers_routing(
    alice: str, repo: AccountingRepository, connect: Connect, orqen_refused: Any
) -> None:
    bob = await new_account(repo)
    bob_key = (await repo.create_key(bob, "bob", None)).plaintext
    async with connect(bob_key) as as_bob:
        # An API key acts for its own account only, whatever it names.
        await orqen_refused(
            as_bob.GetRoutingInsights(accounting_pb2.RoutingPeriod(account_id=alice)), grpc.StatusCode.PERMISSION_DENIED
        )
        own = await as_bob.ListRoutingTraces(accounting_pb2.ListRoutingTracesRequest())
        calibration = await as_bob.GetRoutingCalibration(accounting_pb2.RoutingPeriod())
    assert not own.traces and calibration.control_requests == 0


async def test_periods_and_page_sizes_are_bounded(alice: str, connect: Connect, orqen_refused: Any) -> None:
    async with connect() as accounting:
        await orqen_refused(
            accounting.GetRoutingCalibration(accounting_pb2.RoutingPeriod(account_id=alice, days=91)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        await orqen_refused(
            accounting.ListRoutingTraces(accounting_pb2.ListRoutingTracesRequest(account_id=alice, limit=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


async def test_the_request_log_shows_every_attempt_and_why_the_model_answered(
    repo: AccountingRepository, connect: Connect, record: Any
) -> None:
    account_id = await new_account(repo)
    attempts = [
        common_pb2.Attempt(
            provider="openai", model="gpt-4o", status=500, error="boom", duration_ms=12, reason="requested"
        ),
        common_pb2.Attempt(provider="openai", model="gpt-4o", status=500, error="boom", duration_ms=11, reason="retry"),
        common_pb2.Attempt(
            provider="anthropic", model="claude-haiku-4-5", status=200, duration_ms=40, reason="fallback"
        ),
    ]
    event = completed(account_id, model="claude-haiku-4-5", attempts=attempts, called=["get_time"])
    event.dispatch.route_reason = "fallback"
    await record([event])
    async with connect() as accounting:
        logged = await accounting.GetRequest(
            accounting_pb2.GetRequestRequest(account_id=account_id, request_id=event.context.request_id)
        )
    assert logged.route_reason == "fallback"
    assert list(logged.attempts) == attempts
    assert list(logged.tools_called) == ["get_time"]
    assert not logged.trace.candidates  # no routing decision was made: none is stored
