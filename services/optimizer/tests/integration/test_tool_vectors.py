"""Tool vectors are shared through a real Redis: a tool is embedded once for every replica."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from redis import Redis

from fakes.serve import free_port
from orqen_optimizer import embeddings
from orqen_optimizer.embeddings import ToolIndex

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
    unreachable.close()
