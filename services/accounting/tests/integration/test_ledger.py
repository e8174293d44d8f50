"""The ledger: every figure of a request, priced; rollups, sessions and tool health counted once;
the request log filtered and paged; one account never sees another's figures; response cache hits
and each account's cache settings."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis

from orqen.v1 import accounting_pb2, common_pb2, dispatch_pb2, events_pb2, optimizer_pb2, usage_pb2
from orqen_accounting import histogram
from orqen_accounting.ledger_record import REQUEST_COLUMNS
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.retention import Retention
from orqen_common.cache import account_config_key
from orqen_common.prices import Prices

MIDNIGHT = dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC)
MINI = ("openai", "gpt-4o-mini")
HAIKU = ("anthropic", "claude-haiku-4-5")


def stamp(at: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(at)
    return out


def completed(
    account_id: str,
    *,
    minute: int = 0,
    day_offset: int = 0,
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    status: int = 200,
    tokens: tuple[int, int, int] = (1000, 200, 0),
    cache_write: int = 0,
    latency_ms: float = 120.0,
    upstream_ms: float = 100.0,
    session: str = "",
    plan: optimizer_pb2.PlanStats | None = None,
    trace: optimizer_pb2.RoutingTrace | None = None,
    offered: tuple[str, ...] = (),
    forwarded: tuple[str, ...] = (),
    called: tuple[str, ...] = (),
    stream: bool = False,
    ingress: str = "openai",
) -> events_pb2.RequestCompleted:
    at = MIDNIGHT - dt.timedelta(days=day_offset) + dt.timedelta(minutes=minute)
    return events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(
            request_id=f"req_{uuid.uuid4().hex}", account_id=account_id, session_id=session, ingress=ingress
        ),
        created_at=stamp(at),
        model_requested=model,
        status=status,
        error="" if status < 400 else "upstream failed",
        stream=stream,
        latency_ms=latency_ms,
        dispatch=dispatch_pb2.DispatchSummary(
            provider=provider,
            model=model if status < 400 else "",
            usage=common_pb2.Usage(
                input_tokens=tokens[0],
                output_tokens=tokens[1],
                cached_input_tokens=tokens[2],
                cache_write_input_tokens=cache_write,
            ),
            upstream_ms=upstream_ms,
            ttft_ms=30.0 if stream else 0.0,
        ),
        plan=plan or optimizer_pb2.PlanStats(),
        trace=trace or optimizer_pb2.RoutingTrace(),
        tools_offered=offered,
        tools_forwarded=forwarded,
        tools_called=called,
    )


ROUTED_PLAN = optimizer_pb2.PlanStats(
    tools_input=20,
    tools_output=3,
    routing="semantic",
    tool_tokens_in=4000,
    tool_tokens_out=500,
    ctx_tokens_in=9000,
    ctx_tokens_out=6000,
    context_compressed=True,
)
ROUTED_TRACE = optimizer_pb2.RoutingTrace(
    mode="semantic",
    k=3,
    k_reason="within 0.25 of the best",
    candidates=[optimizer_pb2.ToolCandidate(name="get_weather", score=0.9)],
)


def usd(tokens_in: int, tokens_out: int, cached: int, model: tuple[str, str], cache_write: int = 0) -> float:
    """What orqen_common.prices charges for these tokens of `model` (provider, model)."""
    usage = common_pb2.Usage(
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_input_tokens=cached,
        cache_write_input_tokens=cache_write,
    )
    cost = Prices().price(*model, usage, MIDNIGHT)
    assert cost is not None
    return float(cost.total)


async def new_account(repo: AccountingRepository) -> str:
    return str((await repo.ensure_account(f"ledger-{uuid.uuid4().hex[:8]}"))["id"])


async def test_a_request_is_stored_with_every_figure_priced(
    repo: AccountingRepository, record: Any, connect: Any
) -> None:
    account_id = await new_account(repo)
    event = completed(
        account_id,
        tokens=(1000, 200, 400),
        cache_write=300,
        latency_ms=150.0,
        upstream_ms=110.0,
        plan=ROUTED_PLAN,
        trace=ROUTED_TRACE,
    )
    assert await record([event]) == 1
    async with connect() as accounting:
        row = await accounting.GetRequest(
            accounting_pb2.GetRequestRequest(account_id=account_id, request_id=event.context.request_id)
        )
    assert row.gateway_ms == pytest.approx(40.0)
    assert (row.ctx_tokens_in, row.ctx_tokens_out, row.ctx_tokens_saved) == (9000, 6000, 3000)
    assert (row.tool_tokens_saved, row.tokens_saved) == (3500, 6500)
    assert (row.k, row.k_reason, row.routing) == (3, "within 0.25 of the best", "semantic")
    assert (row.input_tokens, row.output_tokens, row.cached_input_tokens) == (1000, 200, 400)
    assert row.cache_write_input_tokens == 300
    # gpt-4o-mini has no cache-write price: the 300 written tokens are priced as input.
    assert row.cost_usd == pytest.approx((300 * 0.15 + 400 * 0.075 + 300 * 0.15 + 200 * 0.6) / 1e6, abs=1e-12)
    assert row.cost_usd == pytest.approx(usd(1000, 200, 400, MINI, cache_write=300), abs=1e-12)
    assert row.savings_usd == pytest.approx(6500 * 0.15 / 1e6, abs=1e-12)
    assert not row.price_unknown


async def test_the_record_declares_exactly_the_columns_of_the_migrated_table(pool: asyncpg.Pool) -> None:
    table = await pool.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'requests'"
    )
    assert {r["column_name"] for r in table} == set(REQUEST_COLUMNS)


async def test_a_model_without_a_known_price_is_recorded_with_no_cost_and_counted_apart(
    repo: AccountingRepository, record: Any, pool: asyncpg.Pool, connect: Any
) -> None:
    account_id = await new_account(repo)
    events = [
        completed(account_id, minute=1, model="my-local-llama", provider="my-vllm", session="s-u"),
        completed(account_id, minute=2, model="my-local-llama", provider="my-vllm", session="s-u", tokens=(50, 5, 0)),
        completed(account_id, minute=3, session="s-u"),
    ]
    assert await record(events) == 3
    row = await pool.fetchrow(
        "SELECT cost_usd, savings_usd, price_unknown, input_tokens FROM requests WHERE request_id = $1",
        events[0].context.request_id,
    )
    assert row is not None and tuple(row) == (None, None, True, 1000)
    async with connect() as accounting:
        logged = await accounting.GetRequest(
            accounting_pb2.GetRequestRequest(account_id=account_id, request_id=events[0].context.request_id)
        )
        summary = await accounting.GetUsageSummary(usage_pb2.UsagePeriod(account_id=account_id, days=7))
        session = await accounting.GetSession(accounting_pb2.GetSessionRequest(account_id=account_id, session_id="s-u"))
        savings = await accounting.GetSavings(usage_pb2.UsagePeriod(account_id=account_id, days=7))
    assert logged.price_unknown and not logged.HasField("cost_usd") and not logged.HasField("savings_usd")
    totals = summary.totals
    assert (totals.requests, totals.unpriced_requests, totals.unpriced_tokens) == (3, 2, 1200 + 55)
    assert totals.cost_usd == pytest.approx(usd(1000, 200, 0, MINI))  # the priced request alone
    by_provider = {p.provider: p.totals for p in summary.providers}
    assert by_provider["my-vllm"].unpriced_requests == 2 and by_provider["my-vllm"].cost_usd == 0
    assert by_provider["openai"].unpriced_requests == 0
    assert session.unpriced_requests == 2 and session.cost_usd == pytest.approx(usd(1000, 200, 0, MINI))
    by_model = {m.model: m for m in savings.models}
    assert (by_model["my-local-llama"].unpriced_requests, by_model["gpt-4o-mini"].unpriced_requests) == (2, 0)
    assert savings.totals.unpriced_requests == 2


async def seed_month(account_id: str, record: Any) -> list[events_pb2.RequestCompleted]:
    events = [
        completed(account_id, minute=1, session="s-1", plan=ROUTED_PLAN, trace=ROUTED_TRACE,
                  offered=("get_weather", "search", "book"), forwarded=("get_weather",), called=("get_weather",)),
        completed(account_id, minute=2, session="s-1", latency_ms=400.0, upstream_ms=350.0, stream=True,
                  offered=("get_weather", "search", "book"), forwarded=("get_weather", "search"), called=("book",)),
        completed(account_id, minute=3, session="s-2", model="claude-haiku-4-5", provider="anthropic",
                  tokens=(500, 100, 0), latency_ms=90.0, upstream_ms=80.0),
        completed(account_id, minute=4, session="s-2", status=502, tokens=(0, 0, 0), latency_ms=2000.0,
                  upstream_ms=1990.0, offered=("get_weather",), forwarded=("get_weather",)),
        completed(account_id, day_offset=3, tokens=(100, 10, 0)),
    ]  # fmt: skip
    assert await record(events) == len(events)
    return events


async def test_rollups_count_each_request_once_whatever_is_redelivered(
    repo: AccountingRepository, record: Any, connect: Any
) -> None:
    account_id = await new_account(repo)
    events = await seed_month(account_id, record)
    assert await record(events) == 0  # a replay of the whole batch
    assert await record(events[1:3]) == 0
    today_cost = 2 * usd(1000, 200, 0, MINI) + usd(500, 100, 0, HAIKU)
    async with connect() as accounting:
        period = usage_pb2.UsagePeriod(account_id=account_id, days=7)
        summary = await accounting.GetUsageSummary(period)
        daily = await accounting.GetUsageDaily(period)
        savings = await accounting.GetSavings(period)
        latency = await accounting.GetLatency(period)
        analytics = await accounting.GetAnalyticsDaily(period)
        optimization = await accounting.GetOptimizationStats(period)
        tools = await accounting.GetToolHealth(usage_pb2.ToolHealthRequest(account_id=account_id, days=7))

    month_has_older_day = MIDNIGHT.day > 3
    totals = summary.totals
    assert totals.requests == (5 if month_has_older_day else 4) and totals.errors == 1
    assert totals.tokens_saved == 6500 and totals.savings_usd == pytest.approx(6500 * 0.15 / 1e6)
    by_provider = {p.provider: p.totals for p in summary.providers}
    assert by_provider["anthropic"].cost_usd == pytest.approx(usd(500, 100, 0, HAIKU))
    assert by_provider["anthropic"].input_tokens == 500 and by_provider["openai"].errors == 1

    assert [d.date for d in daily.data][-1] == MIDNIGHT.date().isoformat() and len(daily.data) == 7
    assert daily.data[-1].totals.requests == 4 and daily.data[-1].totals.cost_usd == pytest.approx(today_cost)
    assert daily.data[-4].totals.requests == 1 and daily.data[-2].totals.requests == 0

    assert analytics.data[-1].requests == 4 and analytics.data[-1].success_rate == pytest.approx(0.75)
    today_latency = analytics.data[-1].latency
    assert today_latency.mean_ms == pytest.approx((120 + 400 + 90 + 2000) / 4)
    assert 90 <= today_latency.p50_ms <= 131 and 1800 <= today_latency.p99_ms <= 2200

    assert latency.requests == 5 and latency.mean_gateway_ms == pytest.approx((20 + 50 + 10 + 10 + 20) / 5)
    assert latency.mean_ttft_ms == pytest.approx(30.0)

    assert savings.models[0].model == "gpt-4o-mini" and savings.models[0].tokens_saved == 6500
    assert (savings.models[0].tool_tokens_saved, savings.models[0].ctx_tokens_saved) == (3500, 3000)
    assert [p.provider for p in savings.providers] == ["openai", "anthropic"]

    assert (optimization.optimized_requests, optimization.tools_input, optimization.tools_output) == (1, 20, 3)
    assert optimization.forwarded_share == pytest.approx(3 / 20) and optimization.tokens_saved == 6500
    assert [(m.mode, m.requests) for m in optimization.routing_modes] == [("semantic", 1)]

    health = {t.name: t for t in tools.tools}
    weather, book = health["get_weather"], health["book"]
    assert (weather.offered, weather.forwarded, weather.called, weather.errors) == (3, 3, 1, 1)
    assert (book.offered, book.forwarded, book.called, book.called_not_forwarded) == (2, 0, 1, 1)
    assert tools.tools[0].name == "get_weather"


async def test_sessions_group_requests_and_list_most_recent_first(
    repo: AccountingRepository, record: Any, connect: Any
) -> None:
    account_id = await new_account(repo)
    await seed_month(account_id, record)
    async with connect() as accounting:
        first = await accounting.ListSessions(usage_pb2.ListSessionsRequest(account_id=account_id, limit=1))
        second = await accounting.ListSessions(
            usage_pb2.ListSessionsRequest(account_id=account_id, limit=1, cursor=first.next_cursor)
        )
        one = await accounting.GetSession(accounting_pb2.GetSessionRequest(account_id=account_id, session_id="s-1"))
        inside = await accounting.ListRequests(
            accounting_pb2.ListRequestsRequest(account_id=account_id, session_id="s-2")
        )
    assert [s.session_id for s in first.sessions] == ["s-2"] and second.next_cursor == ""
    assert [s.session_id for s in second.sessions] == ["s-1"]
    s2 = first.sessions[0]
    assert (s2.requests, s2.errors, s2.last_model) == (2, 1, "gpt-4o-mini")
    assert s2.cost_usd == pytest.approx(usd(500, 100, 0, HAIKU))
    assert (one.requests, one.input_tokens, one.tokens_saved) == (2, 2000, 6500)
    assert one.last_at.ToDatetime() - one.first_at.ToDatetime() == dt.timedelta(minutes=1)
    assert [r.status for r in inside.requests] == [502, 200]


async def test_the_request_log_filters_by_model_status_session_and_time_and_pages(
    repo: AccountingRepository, record: Any, connect: Any, orqen_refused: Any
) -> None:
    account_id = await new_account(repo)
    await seed_month(account_id, record)
    await record([completed(account_id, minute=10 + i, session="pages") for i in range(5)])
    await record([completed(account_id, minute=20, model="claude-haiku-4-5", ingress="anthropic")])

    async def ids(**where: Any) -> list[tuple[str, int]]:
        async with connect() as accounting:
            found = await accounting.ListRequests(accounting_pb2.ListRequestsRequest(account_id=account_id, **where))
        return [(r.model_requested, r.status) for r in found.requests]

    assert await ids(model="claude-haiku-4-5") == [("claude-haiku-4-5", 200)] * 2
    assert await ids(ingress="anthropic") == [("claude-haiku-4-5", 200)]
    assert await ids(ingress="anthropic", model="gpt-4o-mini") == []
    assert await ids(status="error") == [("gpt-4o-mini", 502)]
    assert await ids(status="502") == await ids(status="error")
    assert len(await ids(status="success")) == 10
    assert len(await ids(since=stamp(MIDNIGHT - dt.timedelta(days=1)))) == 10
    assert len(await ids(until=stamp(MIDNIGHT))) == 1
    seen, cursor = [], ""
    async with connect() as accounting:
        while True:
            page = await accounting.ListRequests(
                accounting_pb2.ListRequestsRequest(account_id=account_id, session_id="pages", limit=2, cursor=cursor)
            )
            seen += [r.created_at.ToDatetime().minute for r in page.requests]
            cursor = page.next_cursor
            if not cursor:
                break
        await orqen_refused(
            accounting.ListRequests(accounting_pb2.ListRequestsRequest(account_id=account_id, status="oops")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        # Postgres text holds no NUL: a text with one is refused, not left to fail the query.
        for field in ("model", "session_id", "ingress"):
            await orqen_refused(
                accounting.ListRequests(accounting_pb2.ListRequestsRequest(account_id=account_id, **{field: "a\x00"})),
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        await orqen_refused(
            accounting.GetRequest(accounting_pb2.GetRequestRequest(account_id=account_id, request_id="r\x00")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        await orqen_refused(
            accounting.GetSession(accounting_pb2.GetSessionRequest(account_id=account_id, session_id="s\x00")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        await orqen_refused(
            accounting.GetUsageDaily(usage_pb2.UsagePeriod(account_id=account_id, days=400)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    assert seen == [14, 13, 12, 11, 10]


async def test_one_account_never_sees_anothers_usage_sessions_or_tools(
    repo: AccountingRepository, record: Any, connect: Any, orqen_refused: Any
) -> None:
    alice, bob = await new_account(repo), await new_account(repo)
    await repo.create_key(alice, "", "sk-orq-ledger-alice")
    await seed_month(bob, record)
    async with connect("sk-orq-ledger-alice") as as_alice:
        mine = usage_pb2.UsagePeriod()
        assert (await as_alice.GetUsageSummary(mine)).totals.requests == 0
        assert all(d.totals.requests == 0 for d in (await as_alice.GetUsageDaily(mine)).data)
        assert list((await as_alice.GetToolHealth(usage_pb2.ToolHealthRequest())).tools) == []
        assert list((await as_alice.ListSessions(usage_pb2.ListSessionsRequest())).sessions) == []
        assert (await as_alice.GetOptimizationStats(mine)).requests == 0
        assert (await as_alice.GetLatency(mine)).requests == 0
        await orqen_refused(
            as_alice.GetSession(accounting_pb2.GetSessionRequest(session_id="s-1")), grpc.StatusCode.NOT_FOUND
        )
        for call in (
            as_alice.GetUsageSummary(usage_pb2.UsagePeriod(account_id=bob)),
            as_alice.GetSavings(usage_pb2.UsagePeriod(account_id=bob)),
            as_alice.ListSessions(usage_pb2.ListSessionsRequest(account_id=bob)),
            as_alice.ListRequests(accounting_pb2.ListRequestsRequest(account_id=bob, session_id="s-1")),
        ):
            await orqen_refused(call, grpc.StatusCode.PERMISSION_DENIED)
    async with connect() as service:
        await orqen_refused(
            service.GetUsageSummary(usage_pb2.UsagePeriod(account_id=str(uuid.uuid4()))), grpc.StatusCode.NOT_FOUND
        )


async def test_retention_deletes_old_rows_in_batches_and_keeps_the_rollups(
    repo: AccountingRepository, record: Any, pool: asyncpg.Pool, connect: Any
) -> None:
    account_id = await new_account(repo)
    old = [completed(account_id, day_offset=100, minute=i, session="old") for i in range(12)]
    recent = [completed(account_id, day_offset=1, minute=i, session="recent") for i in range(3)]
    await record(old + recent)
    deleted = await Retention(pool, 90, batch=5).purge(dt.datetime.now(dt.UTC))
    assert deleted == 12
    assert await pool.fetchval("SELECT count(*) FROM requests") == 3
    assert [r["session_id"] for r in await pool.fetch("SELECT session_id FROM sessions")] == ["recent"]
    async with connect() as accounting:
        daily = await accounting.GetUsageDaily(usage_pb2.UsagePeriod(account_id=account_id, days=120))
    assert sum(d.totals.requests for d in daily.data) == 15  # the rollups still count what was deleted
    assert await Retention(pool, 90, batch=5).purge(dt.datetime.now(dt.UTC)) == 0


async def test_postgres_puts_latencies_in_the_same_buckets_as_the_histogram_module(pool: asyncpg.Pool) -> None:
    samples = [0.0, 0.5, 1.0, 1.09, 2.0, 3.7, 99.9, 150.0, 1000.0, 65_432.1, 5e6]
    found = await pool.fetch(
        f"SELECT ms, {histogram.sql_bucket('ms')} AS b FROM unnest($1::float8[]) AS t(ms)", samples
    )
    assert [r["b"] for r in found] == [histogram.bucket_of(ms) for ms in samples]


# --- the response cache ---------------------------------------------------------------------


def cache_hit(account_id: str, replayed: tuple[int, int, int]) -> Any:
    """A request answered from the cache: nothing called (usage 0), the replayed answer's usage kept apart."""
    event = completed(account_id, tokens=(0, 0, 0), upstream_ms=0.0)
    event.dispatch.cache = "hit"
    event.dispatch.cached_usage.CopyFrom(
        common_pb2.Usage(input_tokens=replayed[0], output_tokens=replayed[1], cached_input_tokens=replayed[2])
    )
    return event


async def test_a_hit_costs_nothing_and_saves_what_its_answer_cost(
    repo: AccountingRepository, record: Any, connect: Any
) -> None:
    account_id = await new_account(repo)
    miss = completed(account_id, tokens=(1000, 200, 0))
    miss.dispatch.cache = "miss"
    hit = cache_hit(account_id, (1000, 200, 0))
    assert await record([miss, hit]) == 2
    saved = usd(1000, 200, 0, MINI)
    async with connect() as accounting:
        rows = {
            r.request_id: r
            for r in [
                await accounting.GetRequest(
                    accounting_pb2.GetRequestRequest(account_id=account_id, request_id=e.context.request_id)
                )
                for e in (miss, hit)
            ]
        }
        period = usage_pb2.UsagePeriod(account_id=account_id, days=7)
        summary = await accounting.GetUsageSummary(period)
        savings = await accounting.GetSavings(period)
        optimization = await accounting.GetOptimizationStats(period)
    logged_hit, logged_miss = rows[hit.context.request_id], rows[miss.context.request_id]
    assert (logged_hit.cache, logged_hit.cost_usd, logged_hit.input_tokens) == ("hit", 0.0, 0)
    assert logged_hit.cache_saved_usd == pytest.approx(saved, abs=1e-10)
    assert logged_hit.savings_usd == pytest.approx(saved, abs=1e-10)
    assert (logged_miss.cache, logged_miss.cache_saved_usd) == ("miss", 0.0)
    assert logged_miss.cost_usd == pytest.approx(saved, abs=1e-10)
    # The savings figures count the hit: requests, money saved; the cost is the miss's only.
    totals = summary.totals
    assert (totals.requests, totals.cache_hits) == (2, 1)
    assert totals.cache_saved_usd == pytest.approx(saved) and totals.savings_usd == pytest.approx(saved)
    assert totals.cost_usd == pytest.approx(saved)
    [model] = savings.models
    assert (model.cache_hits, model.cache_saved_usd) == (1, pytest.approx(saved))
    # The optimizer's own savings stay its own.
    assert optimization.savings_usd == 0.0


async def test_cache_settings_default_off_are_saved_checked_and_tell_dispatch(
    repo: AccountingRepository, connect: Any, auth_cache: Redis
) -> None:
    account_id = await new_account(repo)
    async with connect() as accounting:
        ref = accounting_pb2.AccountRef(account_id=account_id)
        default = await accounting.GetCacheSettings(ref)
        assert (default.enabled, default.ttl_seconds) == (False, 3600)
        saved = await accounting.PutCacheSettings(
            accounting_pb2.CacheSettings(account_id=account_id, enabled=True, ttl_seconds=600)
        )
        assert (saved.enabled, saved.ttl_seconds) == (True, 600)
        assert (await accounting.GetCacheSettings(ref)).ttl_seconds == 600
        for ttl in (0, 7 * 24 * 3600 + 1):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await accounting.PutCacheSettings(
                    accounting_pb2.CacheSettings(account_id=account_id, enabled=True, ttl_seconds=ttl)
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Dispatch reads them with the account's configuration: the change counter moved.
    assert int(await auth_cache.get(account_config_key(account_id)) or 0) >= 1
