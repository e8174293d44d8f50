"""Embedded Postgres, Redis and NATS: real servers, non-standard ports, data kept across restarts."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import nats
import pytest
import redis
import redis.asyncio as aioredis

from orqen_stack.embedded import EmbeddedServerError, _start_child, start_nats, start_postgres, start_redis
from orqen_stack.procs import STANDARD_PORTS, free_port, port_in_use


def test_free_port_is_never_a_standard_port() -> None:
    ports = {free_port() for _ in range(50)}
    assert not ports & STANDARD_PORTS


def test_free_port_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel offers the port its last probe socket just closed: the edge's HTTP and TLS
    # listeners were once given one port and the stack failed to start.
    offered = iter([41001, 41001, 41002])
    monkeypatch.setattr(socket.socket, "getsockname", lambda self: ("127.0.0.1", next(offered)))
    assert [free_port(), free_port()] == [41001, 41002]


@pytest.mark.asyncio
async def test_postgres_accepts_connections_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    pg = start_postgres(tmp_path / "pg")
    try:
        query = parse_qs(urlsplit(pg.url).query)
        assert pg.url.startswith("postgresql://") and urlsplit(pg.url).path == "/orqen"
        assert query["host"] == [str(pg.socket_dir)]
        assert pg.port not in STANDARD_PORTS
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT current_setting('port')::int") == pg.port
            await conn.execute("CREATE TABLE notes (body text)")
            await conn.execute("INSERT INTO notes VALUES ('kept')")
        finally:
            await conn.close()
    finally:
        pg.stop()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()

    pg = start_postgres(tmp_path / "pg")
    try:
        conn = await asyncpg.connect(pg.url)
        try:
            assert await conn.fetchval("SELECT body FROM notes") == "kept"
        finally:
            await conn.close()
    finally:
        pg.stop()


@pytest.mark.asyncio
async def test_redis_accepts_connections_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    with start_redis(tmp_path / "redis") as server:
        assert re.fullmatch(r"redis://:[\w-]{40,}@127\.0\.0\.1:\d+/0", server.url)
        assert server.port not in STANDARD_PORTS
        client = aioredis.Redis.from_url(server.url)
        await client.set("greeting", "hello")
        assert await client.get("greeting") == b"hello"
        await client.aclose()
    assert not port_in_use(server.port)
    assert (tmp_path / "redis" / "appendonly.aof").exists()

    with start_redis(tmp_path / "redis") as again:
        assert urlsplit(again.url).password == urlsplit(server.url).password  # clients keep their URL
        client = aioredis.Redis.from_url(again.url)
        assert await client.get("greeting") == b"hello"
        await client.aclose()


def test_redis_refuses_clients_without_its_password(tmp_path: Path) -> None:
    with start_redis(tmp_path / "redis") as server:
        password = urlsplit(server.url).password
        assert password
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port).set("orqen:auth:forged", "{}")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="guessed").ping()
        assert redis.Redis.from_url(server.url).ping()
        # Kept where only its owner reads it, never on the command line other users can list.
        assert password.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
        stored = [
            f for f in (tmp_path / "redis").iterdir() if f.is_file() and password in f.read_text(errors="replace")
        ]
        assert [f.stat().st_mode & 0o777 for f in stored] == [0o600]
        assert (tmp_path / "redis").stat().st_mode & 0o777 == 0o700


@pytest.mark.asyncio
async def test_nats_has_jetstream_and_keeps_streams_across_restarts(tmp_path: Path) -> None:
    with start_nats(tmp_path / "nats") as server:
        assert re.fullmatch(r"nats://127\.0\.0\.1:\d+", server.url)
        assert server.port not in STANDARD_PORTS
        client = await nats.connect(server.url)
        sub = await client.subscribe("plain.hello")
        await client.publish("plain.hello", b"hi")
        assert (await sub.next_msg(timeout=5)).data == b"hi"
        js = client.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"])
        ack = await js.publish("events.one", b"stored")
        assert ack.seq == 1
        await client.close()
    assert not port_in_use(server.port)

    with start_nats(tmp_path / "nats") as again:
        client = await nats.connect(again.url)
        message = await client.jetstream().get_msg("EVENTS", 1)
        assert message.data == b"stored"
        await client.close()


def test_a_server_that_dies_at_start_reports_its_log(tmp_path: Path) -> None:
    def argv(_port: int) -> list[str]:
        return [sys.executable, "-c", "print('cannot open the data directory'); raise SystemExit(3)"]

    with pytest.raises(EmbeddedServerError, match=r"(?s)exited with code 3.*cannot open the data directory"):
        _start_child("broken", argv, tmp_path, tmp_path / "broken.log", lambda _port: False, timeout=10)


# --- the test fixtures built on the same servers ------------------------------------------


@pytest.mark.asyncio
async def test_each_test_gets_a_fresh_empty_database(orqen_database_url: str, orqen_postgres_url: str) -> None:
    assert re.search(r"/orqen_test_[0-9a-f]+(\?|$)", orqen_database_url)
    conn = await asyncpg.connect(orqen_database_url)
    try:
        tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables == 0
        await conn.execute("CREATE TABLE mine (id int)")
    finally:
        await conn.close()
    assert urlsplit(orqen_postgres_url).path != urlsplit(orqen_database_url).path


def test_each_test_gets_an_empty_redis_database(orqen_redis_db_url: str, orqen_redis_url: str) -> None:
    client = redis.Redis.from_url(orqen_redis_db_url)
    try:
        assert client.dbsize() == 0
        client.set("mine", "1")
    finally:
        client.close()
    assert orqen_redis_db_url != orqen_redis_url


def test_prefixes_are_unique_and_valid(orqen_nats_prefix: str, orqen_redis_prefix: str) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9_]*", orqen_nats_prefix)
    assert orqen_redis_prefix.endswith(":") and orqen_redis_prefix[:-1] != orqen_nats_prefix


@pytest.mark.asyncio
async def test_streams_under_a_test_prefix_are_deleted_afterwards(orqen_nats_url: str) -> None:
    from orqen_testing.servers import delete_nats_streams, unique_prefix

    prefix = unique_prefix()
    client = await nats.connect(orqen_nats_url)
    try:
        await client.jetstream().add_stream(name=f"{prefix.upper()}_EVENTS", subjects=[f"{prefix}.events.>"])
        assert await delete_nats_streams(orqen_nats_url, prefix) == [f"{prefix.upper()}_EVENTS"]
        assert await asyncio.wait_for(delete_nats_streams(orqen_nats_url, prefix), 10) == []
    finally:
        await client.close()
