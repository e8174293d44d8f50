"""`orqen events dlq` and `orqen events replay` against a real NATS server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from orqen_common.events import (
    CONSUMER_HEADER,
    DELIVERIES_HEADER,
    ERROR_HEADER,
    MSG_ID_HEADER,
    REQUEST_ID_HEADER,
    SUBJECT_HEADER,
    EventNames,
    ensure_stream,
)
from orqen_stack.cli import main
from orqen_stack.embedded import NATS_URL_FILE


async def _park(url: str, names: EventNames, request_id: str, consumer: str) -> None:
    """A dead letter as DurableConsumer parks one."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_stream(js, names)
        headers = {
            MSG_ID_HEADER: f"dlq-{request_id}",
            REQUEST_ID_HEADER: request_id,
            SUBJECT_HEADER: names.subject("request.completed"),
            CONSUMER_HEADER: consumer,
            DELIVERIES_HEADER: "5",
            ERROR_HEADER: "CheckViolationError('defect')",
        }
        await js.publish(names.dead_letters(consumer), request_id.encode(), headers=headers)
    finally:
        await nc.close()


async def _on_subject(url: str, names: EventNames) -> list[tuple[bytes, str]]:
    """The events on request.completed: payload and request id."""
    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe(names.subject("request.completed"), stream=names.stream)
        try:
            msgs = await sub.fetch(10, timeout=1)
        except nats.errors.TimeoutError:
            return []
        return [(m.data, (m.headers or {}).get(REQUEST_ID_HEADER, "")) for m in msgs]
    finally:
        await nc.close()


def test_dlq_lists_and_replay_puts_back_the_dead_letters(
    orqen_nats_url: str, orqen_nats_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = EventNames(orqen_nats_prefix)
    asyncio.run(_park(orqen_nats_url, names, "req_a", "accounting"))
    asyncio.run(_park(orqen_nats_url, names, "req_b", "billing"))
    monkeypatch.setenv("ORQEN_NATS_URL", orqen_nats_url)
    monkeypatch.setenv("ORQEN_NATS_PREFIX", orqen_nats_prefix)

    assert main(["events", "dlq"]) == 0
    listed = capsys.readouterr()
    assert [line.split("\t")[2:5] for line in listed.out.splitlines()] == [
        ["accounting", "req_a", "5 deliveries"],
        ["billing", "req_b", "5 deliveries"],
    ]
    assert "2 dead letter(s)" in listed.err

    assert main(["events", "replay", "--consumer", "billing"]) == 0
    assert "1 dead letter(s) replayed" in capsys.readouterr().err
    assert asyncio.run(_on_subject(orqen_nats_url, names)) == [(b"req_b", "req_b")]
    assert main(["events", "dlq"]) == 0
    assert [line.split("\t")[3] for line in capsys.readouterr().out.splitlines()] == ["req_a"]


def test_events_finds_the_local_stacks_embedded_nats(
    orqen_nats_url: str,
    orqen_nats_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats" / NATS_URL_FILE).write_text(orqen_nats_url + "\n")
    monkeypatch.delenv("ORQEN_NATS_URL", raising=False)
    monkeypatch.setenv("ORQEN_HOME", str(tmp_path))
    monkeypatch.setenv("ORQEN_NATS_PREFIX", orqen_nats_prefix)
    assert main(["events", "dlq"]) == 0
    assert "0 dead letter(s)" in capsys.readouterr().err


def test_events_without_nats_points_to_make_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORQEN_NATS_URL", "nats://127.0.0.1:1")
    assert main(["events", "replay"]) == 1
    assert "cannot reach NATS" in capsys.readouterr().err
