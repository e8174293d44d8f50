"""Learned tool usage: written on ingest into real Redis, decayed, bounded, shown in the calibration, reset."""

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import pytest
from redis.asyncio import Redis

from fakes.serve import free_port
from orqen.v1 import accounting_pb2, accounting_pb2_grpc, common_pb2, events_pb2, optimizer_pb2
from orqen_accounting.ingest import RequestIngest
from orqen_accounting.ledger import Ledger
from orqen_accounting.repository import AccountingRepository
from orqen_accounting.tool_learning import ToolLearningStore
from orqen_common.grpc_client import open_channel
from orqen_common.prices import Prices
from orqen_common.tool_learning import ASKED, CO_USED, FOLLOWS, HALF_LIFE_SECONDS, index_key, relation_key, weight

from .conftest import Connect

NOW = time.time()  # these tests' events happen now: the calibration reads them at the real time
OFFERED = ["search_flights", "book_flight", "send_email", "get_weather"]


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Msg:
    """What RequestIngest reads of a NATS message."""

    data: bytes


def answered(
    account_id: str,
    called: list[str],
    *,
    session: str = "",
    top: str = "search_flights",
    routing: str = "semantic",
    k: int = 2,
    learned: tuple[str, ...] = (),
    displaced: tuple[str, ...] = (),
) -> events_pb2.RequestCompleted:
    trace = optimizer_pb2.RoutingTrace(
        mode=routing.removesuffix("_ab_ctrl"),
        k=k,
        candidates=[optimizer_pb2.ToolCandidate(name=n, score=1.0 - i / 10) for i, n in enumerate([top, *OFFERED])],
        learned=[optimizer_pb2.LearnedTool(name=n, reason="follows x (0.50)", score=0.5) for n in learned],
        displaced=displaced,
    )
    event = events_pb2.RequestCompleted(
        context=common_pb2.RequestContext(
            request_id=f"req_{uuid.uuid4().hex}", account_id=account_id, session_id=session, ingress="openai"
        ),
        model_requested="gpt-4o-mini",
        status=200,
        plan=optimizer_pb2.PlanStats(routing=routing),
        trace=trace,
        tools_called=called,
        tools_offered=OFFERED,
    )
    event.created_at.GetCurrentTime()
    return event


async def counts(redis: Redis, account_id: str, relation: str, anchor: str) -> dict[str, float]:
    """A statistic's counts as read at NOW (the anchor's own under "")."""
    fields = await redis.hgetall(relation_key(account_id, relation, anchor))
    return {name.decode(): round(float(value) / weight(NOW), 3) for name, value in fields.items()}


@pytest.fixture
async def account(repo: AccountingRepository) -> str:
    return str((await repo.ensure_account(f"learning-{uuid.uuid4().hex[:8]}"))["id"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ingest(pool: asyncpg.Pool, auth_cache: Redis, clock: Clock) -> Callable[..., Any]:
    """`await ingest(*events)`: the events through the accounting consumer's handler, learning included."""
    handler = RequestIngest(Ledger(pool), Prices(), ToolLearningStore(auth_cache, clock))

    async def run(*events: events_pb2.RequestCompleted) -> None:
        await handler([Msg(e.SerializeToString()) for e in events])

    return run


async def test_a_session_teaches_sequence_co_use_and_asks_once_even_when_redelivered(
    account: str, ingest: Any, auth_cache: Redis
) -> None:
    first = answered(account, ["search_flights"], session="s1")
    second = answered(account, ["book_flight", "send_email"], session="s1", top="book_flight")
    await ingest(first)
    await ingest(second)
    await ingest(first, second)  # redelivered: already in the request log, so learned already

    assert await counts(auth_cache, account, FOLLOWS, "search_flights") == {"": 1.0, "book_flight": 1.0}
    assert await counts(auth_cache, account, FOLLOWS, "book_flight") == {"": 1.0, "send_email": 1.0}
    assert await counts(auth_cache, account, CO_USED, "search_flights") == {
        "": 1.0,
        "book_flight": 1.0,
        "send_email": 1.0,
    }
    assert await counts(auth_cache, account, CO_USED, "send_email") == {
        "": 1.0,
        "search_flights": 1.0,
        "book_flight": 1.0,
    }
    assert await counts(auth_cache, account, ASKED, "book_flight") == {"": 1.0, "book_flight": 1.0, "send_email": 1.0}


async def test_without_a_session_only_the_answer_itself_teaches_and_made_up_tools_teach_nothing(
    account: str, ingest: Any, auth_cache: Redis
) -> None:
    await ingest(answered(account, ["search_flights"]))
    await ingest(answered(account, ["book_flight", "delete_everything"]))  # not offered: made up by the model
    assert await counts(auth_cache, account, FOLLOWS, "search_flights") == {}
    assert await counts(auth_cache, account, CO_USED, "book_flight") == {"": 1.0}
    assert await counts(auth_cache, account, CO_USED, "delete_everything") == {}


async def test_counts_halve_every_half_life(account: str, auth_cache: Redis) -> None:
    clock = Clock()
    store = ToolLearningStore(auth_cache, clock)
    pair = ["search_flights", "book_flight"]
    await store.learn([answered(account, pair)])
    clock.now += HALF_LIFE_SECONDS
    await store.learn([answered(account, pair)])
    summary = await store.summary(account)
    follows = [p for p in summary.top_pairs if p.relation == FOLLOWS]
    # One event a half-life old counts 0.5, the fresh one 1: 1.5, and the share stays 1.
    assert [(p.anchor, p.tool, p.count, p.probability) for p in follows] == [
        ("search_flights", "book_flight", 1.5, 1.0)
    ]


async def test_each_statistic_keeps_its_strongest_tools_and_the_account_its_latest_statistics(
    account: str, auth_cache: Redis
) -> None:
    clock = Clock()
    store = ToolLearningStore(auth_cache, clock, max_pairs=1, max_keys=4)
    answers = [["search_flights", "book_flight"]] * 3 + [
        ["search_flights", "get_weather"],
        ["search_flights", "send_email"],
    ]
    for called in answers:
        clock.now += 1
        await store.learn([answered(account, called, top="")])
    # Three followers of search_flights exceed 2 * max_pairs and the anchor's own: pruned to the best one.
    assert await counts(auth_cache, account, FOLLOWS, "search_flights") == {"": 5.0, "book_flight": 3.0}
    # Five statistics for at most four: the least recently updated (book_flight's co-use) went.
    assert await auth_cache.zcard(index_key(account)) == 4
    assert await counts(auth_cache, account, CO_USED, "book_flight") == {}
    assert await counts(auth_cache, account, CO_USED, "send_email") == {"": 1.0, "search_flights": 1.0}


async def test_calibration_reports_recall_with_and_without_learning_and_a_reset_forgets(
    account: str, ingest: Any, auth_cache: Redis, connect: Connect
) -> None:
    control = {"routing": "semantic_ab_ctrl", "k": 1}
    await ingest(
        # K=1 kept search_flights only; learning added book_flight: recalled with learning, not without.
        answered(account, ["search_flights", "book_flight"], session="s2", learned=("book_flight",), **control),
        answered(account, ["search_flights"], session="s3", **control),
        answered(account, ["send_email"], session="s3", **control),  # missed either way
        # K held the called tool, but learning gave its place to another: recalled without learning only.
        answered(
            account, ["search_flights"], session="s4", learned=("send_email",), displaced=("search_flights",), **control
        ),
    )
    async with connect() as accounting:
        calibration = await accounting.GetRoutingCalibration(accounting_pb2.RoutingPeriod(account_id=account))
        assert calibration.control_requests == 4
        assert calibration.recall == pytest.approx(2 / 4)  # the second and the fourth
        assert calibration.recall_with_learning == pytest.approx(2 / 4)  # the first and the second
        assert calibration.learned_control_requests == 2
        learning = calibration.learning
        assert learning.keys > 0 and learning.pairs > 0
        strongest = learning.top_pairs[0]
        assert (strongest.relation, strongest.anchor, strongest.tool) == (ASKED, "search_flights", "search_flights")
        assert strongest.count == pytest.approx(3.0, rel=1e-3) and strongest.probability == 0.75

        reset = await accounting.ResetToolLearning(accounting_pb2.AccountRef(account_id=account))
        assert reset.keys_deleted == learning.keys
        after = await accounting.GetRoutingCalibration(accounting_pb2.RoutingPeriod(account_id=account))
    assert after.learning.keys == 0 and not after.learning.top_pairs
    assert after.recall_with_learning == pytest.approx(2 / 4)  # the request log is not learning: it stays
    assert not [key async for key in auth_cache.scan_iter(match=f"*{account}*")]


async def test_a_redis_that_fails_costs_the_learning_only(
    account: str, serve_accounting: Callable[[Redis], Awaitable[str]], internal_token: str
) -> None:
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1, socket_timeout=1)
    try:
        assert await ToolLearningStore(down).learn([answered(account, ["search_flights"])]) == 0
        async with open_channel(await serve_accounting(down), internal_token) as channel:
            accounting = accounting_pb2_grpc.AccountingStub(channel)
            calibration = await accounting.GetRoutingCalibration(accounting_pb2.RoutingPeriod(account_id=account))
            assert not calibration.HasField("learning")  # shown without it
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await accounting.ResetToolLearning(accounting_pb2.AccountRef(account_id=account))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Redis is unavailable" in str(refused.value.details())
    finally:
        await down.aclose()
