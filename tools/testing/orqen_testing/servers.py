"""Real Postgres, Redis and NATS for every test tier, and per-test isolation on top of them.

Each server is resolved once per process, in this order:
1. `ORQEN_TEST_DATABASE_URL` / `ORQEN_TEST_REDIS_URL` / `ORQEN_TEST_NATS_URL`;
2. a testcontainers container (postgres:15, redis:7, nats:2.10 -js) when a Docker engine answers;
3. the embedded servers of `orqen_stack.embedded`, in a temporary directory.
No test is skipped for lack of a server: the last option needs nothing but the venv.

Tests on a shared server never see each other's data: each gets its own database
(`fresh_database`), its own Redis database (`claimed_redis_db`) or key prefix, and its own
NATS prefix (`unique_prefix`, streams deleted afterwards by `delete_nats_streams`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import redis

from orqen_stack.embedded import EmbeddedServer, start_nats, start_postgres, start_redis

T = TypeVar("T")

ENV_VARS = {"postgres": "ORQEN_TEST_DATABASE_URL", "redis": "ORQEN_TEST_REDIS_URL", "nats": "ORQEN_TEST_NATS_URL"}
_CLAIM_PREFIX = "orqen:test:claim:"
_CLAIM_TTL_SECONDS = 3600


def docker_available(timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers a ping within `timeout` seconds; never raises, never prints."""
    try:
        import docker

        client = docker.from_env(timeout=max(1, int(timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class ServerPool:
    """Resolves each kind of server at most once and stops, on close(), whatever it started itself."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self._urls: dict[str, str] = {}
        self._stops: list[Callable[[], object]] = []
        self._tmp: Path | None = None
        self._docker: bool | None = None
        self._lock = threading.Lock()

    def postgres_url(self) -> str:
        """A postgresql:// URL of a server on which tests may create databases."""
        return self._url("postgres")

    def redis_url(self) -> str:
        """A redis:// URL (database 0 of a server whose other databases tests claim)."""
        return self._url("redis")

    def nats_url(self) -> str:
        """A nats:// URL of a server with JetStream enabled."""
        return self._url("nats")

    def close(self) -> None:
        """Stop what this pool started (newest first) and forget every URL; later calls start anew."""
        with self._lock:
            while self._stops:
                with contextlib.suppress(Exception):
                    self._stops.pop()()
            self._urls.clear()
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None

    def _url(self, kind: str) -> str:
        with self._lock:
            if kind not in self._urls:
                self._urls[kind] = self._environ.get(ENV_VARS[kind]) or self._start(kind)
            return self._urls[kind]

    def _start(self, kind: str) -> str:
        if self._docker is None:
            self._docker = docker_available()
        return self._start_container(kind) if self._docker else self._start_embedded(kind)

    def _start_embedded(self, kind: str) -> str:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="orqen-test-"))
        server: EmbeddedServer
        if kind == "postgres":
            server = start_postgres(self._tmp / "pg")
        elif kind == "redis":
            server = start_redis(self._tmp / "redis")
        else:
            server = start_nats(self._tmp / "nats")
        self._stops.append(server.stop)
        return server.url

    def _start_container(self, kind: str) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "postgres":
                from testcontainers.community.postgres import PostgresContainer

                pg = PostgresContainer("postgres:15", driver=None).start()
                self._stops.append(pg.stop)
                return str(pg.get_connection_url())
            if kind == "redis":
                from testcontainers.community.redis import RedisContainer

                rd = RedisContainer("redis:7").start()
                self._stops.append(rd.stop)
                return f"redis://{rd.get_container_host_ip()}:{rd.get_exposed_port(rd.port)}/0"
            from testcontainers.community.nats import NatsContainer

            nc = NatsContainer("nats:2.10", jetstream=True).start()
            self._stops.append(nc.stop)
            return str(nc.nats_uri())


@functools.cache
def shared_servers() -> ServerPool:
    """The process-wide pool (one set of servers per test session), closed at exit at the latest."""
    pool = ServerPool()
    atexit.register(pool.close)
    return pool


def postgres_url() -> str:
    """The test Postgres server's URL, resolved (and started if need be) once per process."""
    return shared_servers().postgres_url()


def redis_url() -> str:
    """The test Redis server's URL, resolved (and started if need be) once per process."""
    return shared_servers().redis_url()


def nats_url() -> str:
    """The test NATS server's URL, resolved (and started if need be) once per process."""
    return shared_servers().nats_url()


def unique_prefix() -> str:
    """A fresh name prefix valid as ORQEN_NATS_PREFIX (`^[a-z][a-z0-9_]*$`) and as a key prefix."""
    return f"t{secrets.token_hex(6)}"


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even if the caller is inside an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def with_database(url: str, database: str) -> str:
    """The same postgresql:// URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database `orqen_test_<random>` on the server; dropped (connections and all) afterwards."""
    name = f"orqen_test_{secrets.token_hex(6)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(server_url, timeout=30)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    run_sync(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        run_sync(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def with_redis_db(url: str, db: int) -> str:
    """The same redis:// URL pointing at database `db`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextlib.contextmanager
def claimed_redis_db(server_url: str) -> Iterator[str]:
    """An empty Redis database of its own, claimed atomically so concurrent test sessions never share it.

    The claims are keys in the server URL's database (SET NX with a TTL, so a crashed session's
    claims expire); the database is flushed before and after use.
    """
    admin = redis.Redis.from_url(server_url)
    try:
        try:
            count = int(admin.config_get("databases").get("databases") or 16)
        except redis.RedisError:
            count = 16  # CONFIG may be disabled; 16 is Redis's default
        token = secrets.token_hex(8)
        base_db = int(urlsplit(server_url).path.strip("/") or 0)
        db = next(
            (
                n
                for n in range(count)
                if n != base_db and admin.set(f"{_CLAIM_PREFIX}{n}", token, nx=True, ex=_CLAIM_TTL_SECONDS)
            ),
            None,
        )
        if db is None:
            raise RuntimeError(f"all {count - 1} Redis test databases on {server_url} are claimed by other tests")
        url = with_redis_db(server_url, db)
        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
            yield url
        finally:
            client.flushdb()
            client.close()
            # Release only our own claim, even if it expired and someone else took the number.
            if admin.get(f"{_CLAIM_PREFIX}{db}") == token.encode():
                admin.delete(f"{_CLAIM_PREFIX}{db}")
    finally:
        admin.close()


async def delete_nats_streams(url: str, prefix: str) -> list[str]:
    """Delete the JetStream streams (and so KV buckets) whose name contains `prefix`; returns their names."""
    client = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        manager = client.jsm()
        names = [
            info.config.name
            for info in await manager.streams_info()
            if info.config.name and prefix.lower() in info.config.name.lower()
        ]
        for name in names:
            await manager.delete_stream(name)
        return names
    finally:
        await client.close()


@contextlib.contextmanager
def frozen(pid: int, timeout: float = 10.0) -> Iterator[None]:
    """The process `pid` stopped (SIGSTOP) for the block, then continued.

    A stop takes effect asynchronously: on a loaded machine a thread of the process can still
    answer a request sent just after `kill` returns (seen: a NATS server answering JetStream
    3 times in 40). The block starts only once every thread of the process is seen stopped.
    """
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + timeout
        while not is_stopped(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {pid} was sent SIGSTOP but did not stop within {timeout} s")
            time.sleep(0.001)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def is_stopped(pid: int) -> bool:
    """Whether every thread of `pid` is stopped (Linux: the state field of /proc/<pid>/task/*/stat)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # a thread that has just exited
            continue
        if stat[stat.rindex(")") + 2] not in "Tt":
            return False
    return True
