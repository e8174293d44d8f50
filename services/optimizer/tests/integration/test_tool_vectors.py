"""Tool vectors are shared through a real Redis: a tool is embedded once for every replica, and the
workers that see a new list at once share out its texts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
from redis import Redis

from fakes.serve import free_port
from orqen_optimizer import embeddings
from orqen_optimizer.embeddings import ToolIndex, text_id
from orqen_optimizer.plan import CLAIMED_AT_ONCE, Planner
from orqen_optimizer.policy import PASSTHROUGH, RoutingPolicy

TOOLS = ["get weather. Current weather for a city", "book flight. Book a flight between airports", "send email"]


@pytest.fixture
def redis(orqen_redis_db_url: str) -> Iterator[Redis]:
    client = Redis.from_url(orqen_redis_db_url)
    yield client
    client.close()


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the model is asked to embed."""
    seen: list[str] = []
    real = embeddings.embed

    def counting(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return real(texts)

    monkeypatch.setattr(embeddings, "embed", counting)
    return seen


def test_a_second_replica_fetches_what_the_first_embedded(redis: Redis, embedded: list[str]) -> None:
    first, second = ToolIndex(redis), ToolIndex(redis)
    ids = first.add(TOOLS)
    assert sorted(embedded) == sorted(TOOLS)
    embedded.clear()
    assert second.add(TOOLS) == ids and embedded == []  # nothing embedded again
    query = embeddings.embed(["what's the weather in Oslo"])[0]
    assert second.scores(query, ids) == pytest.approx(first.scores(query, ids))
    # Keyed by the graph that made them: a replica running the float graph never reads them.
    key = first._key(ids[0])
    assert key == f"orqen:tool-vector:2:all-MiniLM-L6-v2-int8:{ids[0]:016x}" and redis.ttl(key) > 0


def test_a_restarted_replica_finds_a_known_toolset_in_the_shared_cache(redis: Redis, embedded: list[str]) -> None:
    ToolIndex(redis).add(TOOLS)
    embedded.clear()
    restarted = ToolIndex(redis)
    assert restarted.missing([*TOOLS, "a tool nobody has seen"]) == ["a tool nobody has seen"]
    assert len(restarted) == len(TOOLS) and embedded == []  # fetched, not embedded


def test_without_redis_the_index_still_works_on_its_own(embedded: list[str]) -> None:
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    index = ToolIndex(unreachable)
    ids = index.add(TOOLS)
    assert sorted(embedded) == sorted(TOOLS) and len(index) == len(TOOLS)
    query = embeddings.embed(["book a flight to Rome"])[0]
    assert ids[int(np.argmax(index.scores(query, ids)))] == ids[1]
    assert index.claim(TOOLS, 2) == (TOOLS[:2], 2)  # no claims to share the work out: this one does it
    unreachable.close()


SEMANTIC_ONLY = RoutingPolicy(mode="semantic", ab_control_share=0.0)
RECORDS = {
    "messages": [{"role": "user", "content": "Find the ledger record number 7"}],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": f"ledger_{i}",
                "description": f"Looks up ledger record number {i}.",
                "parameters": {"type": "object", "properties": {"record_id": {"type": "string"}}},
            },
        }
        for i in range(100)
    ],
}


class Worker(ToolIndex):
    """One optimizer worker's index: records the ids of the texts it embedded and shared; with `hold`, its
    background indexing waits until `release` is set."""

    def __init__(self, redis: Redis, hold: bool = False) -> None:
        super().__init__(redis)
        self.embedded: list[int] = []
        self.holding = threading.Event()  # its background indexing has claimed texts and waits
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def add(self, texts: Sequence[str], ids: Sequence[int] | None = None) -> Sequence[int]:
        if threading.current_thread().name.startswith("tool-indexing"):
            self.holding.set()
            self.release.wait()
        return super().add(texts, ids)

    def _share(self, ids: list[int], vectors: np.ndarray) -> None:
        self.embedded.extend(ids)
        super()._share(ids, vectors)


def until(condition: Callable[[], bool], seconds: float = 60.0) -> bool:
    """Whether `condition` held within `seconds` (checked every 50 ms)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def plan_until(planner: Planner, done: Callable[[str], bool], seconds: float = 60.0) -> str:
    """Plan RECORDS until `done(routing mode)`; the last mode."""
    deadline = time.monotonic() + seconds
    while True:
        _, stats, _ = planner.plan(RECORDS, SEMANTIC_ONLY)
        if done(stats.routing) or time.monotonic() > deadline:
            return stats.routing
        time.sleep(0.05)


def test_workers_that_see_a_new_list_at_once_embed_each_text_once_between_them(
    redis: Redis, embedded: list[str]
) -> None:
    first, second = Worker(redis, hold=True), Worker(redis)
    one, other = Planner(first, max_new_tools=2), Planner(second, max_new_tools=2)
    try:
        # The first worker claims its first few and is held there; the second, given the list next,
        # claims and embeds everything else.
        assert one.plan(RECORDS, SEMANTIC_ONLY)[1].routing == PASSTHROUGH
        assert first.holding.wait(30)
        assert other.plan(RECORDS, SEMANTIC_ONLY)[1].routing == PASSTHROUGH
        assert until(lambda: len(second.embedded) == len(RECORDS["tools"]) - CLAIMED_AT_ONCE)
        first.release.set()
        assert plan_until(one, lambda mode: mode != PASSTHROUGH) == "semantic"
        assert plan_until(other, lambda mode: mode != PASSTHROUGH) == "semantic"
    finally:
        first.release.set()
        one.close()
        other.close()
    # Each worker embedded its share of the list, and each text was embedded once.
    assert len(first.embedded) == CLAIMED_AT_ONCE
    assert sorted(first.embedded + second.embedded) == sorted({text_id(t) for t in embedded})
    assert len(embedded) == len(set(embedded)) == len(RECORDS["tools"])


def test_texts_claimed_by_a_worker_that_is_gone_are_embedded_by_another_once_the_claim_runs_out(
    redis: Redis, embedded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embeddings, "CLAIM_SECONDS", 1)
    stuck, alive = Worker(redis, hold=True), Worker(redis)
    gone, planner = Planner(stuck, max_new_tools=2), Planner(alive, max_new_tools=2)
    try:
        gone.plan(RECORDS, SEMANTIC_ONLY)  # claims its first few and never gets further
        assert stuck.holding.wait(30)
        assert plan_until(planner, lambda mode: mode != PASSTHROUGH) == "semantic"  # once the claims ran out
    finally:
        planner.close()  # its last batch shared before the stalled one goes on
        stuck.release.set()
        gone.close()
    # The live worker embedded every text, the gone one's claimed few too, and each one once.
    assert stuck.embedded == [] and sorted(alive.embedded) == sorted({text_id(t) for t in embedded})
    assert len(embedded) == len(set(embedded)) == len(RECORDS["tools"])
