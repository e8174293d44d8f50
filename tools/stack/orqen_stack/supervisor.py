"""The local supervisor behind `orqen up`: infrastructure, the five services, readiness, restarts, shutdown.

Once the stack is ready, a service that exits on its own is restarted with backoff while the
others keep serving; one that keeps exiting right after each restart stops the stack (see restarts.py).

A test can run a whole stack in-process with its own home and ports:

    config = StackConfig.from_env({**os.environ, "ORQEN_HOME": str(tmp), "ORQEN_EDGE_PORT": "18080", ...})
    stack = Stack(config)
    info = await stack.start()      # raises StackError (everything already stopped) on failure
    try: ...                         # talk to info.edge_url with info.api_key
    finally: await stack.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from orqen_stack.config import DEFAULT_ADDRS, STOP_ORDER, ServiceSpec, StackConfig, StackInfo
from orqen_stack.embedded import (
    EmbeddedPostgres,
    EmbeddedServer,
    EmbeddedServerError,
    start_nats,
    start_postgres,
    start_redis,
)
from orqen_stack.procs import PRIVATE_UMASK, open_private_log, port_in_use, tail
from orqen_stack.readyz import not_ready
from orqen_stack.restarts import RestartBackoff


def say(message: str) -> None:
    """A supervisor message on stderr (the terminal, or orqen.log when detached)."""
    print(f"{time.strftime('%H:%M:%S')} orqen: {message}", file=sys.stderr, flush=True)


class StackError(RuntimeError):
    """The stack could not start; the message says why, with the relevant log tails."""


# Infrastructure the stack starts itself when its URL is not in the environment.
_INFRA = (("ORQEN_DATABASE_URL", "pg"), ("ORQEN_REDIS_URL", "redis"), ("ORQEN_NATS_URL", "nats"))


class Stack:
    """Starts, watches and stops one local stack. Not reusable: one start, one stop."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._infra: list[EmbeddedServer] = []
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        # When each service's current process started (event-loop clock), to tell a crash loop apart.
        self._started_at: dict[str, float] = {}
        # Services that are down for good: exited during start-up, or gave up restarting.
        self._exited: dict[str, int] = {}
        self._log_offsets: dict[str, int] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        # Set once the stack is ready: from then on an exit means a restart, not a failed start.
        self._serving = False
        # Set when stop is asked; cuts a restart's backoff short.
        self._stop_requested = asyncio.Event()
        # Held while a service is spawned, so stop never misses a process that is being restarted.
        self._spawning = asyncio.Lock()
        # The environment every service got (infrastructure URLs and secrets included), once started.
        self.service_env: dict[str, str] = {}
        # Set whenever something the supervisor waits on happens: a child exits, or stop is asked.
        self._wake = asyncio.Event()

    def pids(self) -> dict[str, int]:
        """The process id of each running service (tests measure their memory)."""
        return {name: proc.pid for name, proc in self._procs.items() if proc.returncode is None}

    def embedded(self, name: str) -> EmbeddedServer | None:
        """The embedded server `name` ("postgres", "redis" or "nats") this stack started, if it did.

        Fault runs pause it (its pid) or restart it under the running services.
        """
        return next((server for server in self._infra if server.name == name), None)

    async def restart_embedded_postgres(self, down_for: float = 0.0) -> None:
        """Stop the embedded Postgres, wait `down_for` seconds, start it again on the same data and socket.

        The services keep their URL: the new server listens where the old one did.
        """
        old = self.embedded("postgres")
        if not isinstance(old, EmbeddedPostgres):
            raise StackError("this stack did not start an embedded Postgres")
        say("restarting embedded postgres")
        await asyncio.to_thread(old.stop)
        await asyncio.sleep(down_for)
        new = await asyncio.to_thread(start_postgres, old.pgdata, database=old.database, port=old.port)
        self._infra[self._infra.index(old)] = new
        say("embedded postgres is back")

    def request_stop(self) -> None:
        """Ask the stack to stop (safe from a signal handler); start() and wait() return soon after."""
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()

    async def start(self) -> StackInfo:
        """Start infrastructure and services and wait for /readyz; on any failure, stop what started."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def wait(self) -> str | None:
        """Block until stop is requested (None) or a service is down for good (its name)."""
        while True:
            self._wake.clear()
            if self._exited:
                return next(iter(self._exited))
            if self._stopping:
                return None
            await self._wake.wait()

    def exit_code(self, name: str) -> int | None:
        return self._exited.get(name)

    def log_path(self, name: str) -> Path:
        return self.config.home.logs_dir / f"{name}.log"

    def log_tail(self, name: str) -> str:
        """The end of what a service logged in this run (its log file is shared with earlier runs)."""
        return tail(self.log_path(name), since=self._log_offsets.get(name, 0))

    async def stop(self) -> None:
        """Stop services in dependency order (SIGTERM, grace, SIGKILL), then the servers we started."""
        self._stopping = True
        self._stop_requested.set()
        # A restart already spawning finishes registering its process, and no other begins.
        async with self._spawning:
            pass
        known = {name for group in STOP_ORDER for name in group}
        extra = tuple(name for name in self._procs if name not in known)
        for group in ((*extra, *STOP_ORDER[0]), *STOP_ORDER[1:]):
            await asyncio.gather(*(self._stop_service(name) for name in group if name in self._procs))
        for server in reversed(self._infra):
            say(f"stopping embedded {server.name}")
            await asyncio.to_thread(server.stop)
        self._infra.clear()
        for watcher in self._watchers:
            watcher.cancel()

    # --- start-up ----------------------------------------------------------------------

    async def _start(self) -> StackInfo:
        config = self.config
        config.home.ensure()
        busy = [f"{what} ({port})" for what, port in config.ports().items() if port_in_use(port)]
        if busy:
            raise StackError(f"ports already in use: {', '.join(busy)}; is another stack running?")
        secrets = config.home.secrets(config.env)
        env = await self._infrastructure()
        # pgserver, run as root, opens the folders above its data (the home among them) to its own user.
        config.home.secure()
        env.update(
            {
                # The local stack is a development stack: the services accept the well-known
                # placeholder secrets here (the ones `orqen up` generates are real anyway).
                "ORQEN_ENV": config.env.get("ORQEN_ENV") or "development",
                "ORQEN_INTERNAL_TOKEN": secrets.internal_token,
                "ORQEN_BOOTSTRAP_API_KEY": secrets.bootstrap_api_key,
                "ORQEN_CREDENTIALS_KEYS": secrets.credentials_keys,
                "ORQEN_BOOTSTRAP_OWNER_EMAIL": config.owner_email,
                "ORQEN_BOOTSTRAP_OWNER_PASSWORD": secrets.bootstrap_owner_password,
                "ORQEN_HOME": str(config.home.root),
                "ORQEN_EDGE_PORT": str(config.edge_port),
                "ORQEN_EDGE_TLS_PORT": str(config.edge_tls_port),
                # Stripe sends the browser back to the dashboard's billing page of this very edge.
                "ORQEN_DASHBOARD_URL": config.env.get("ORQEN_DASHBOARD_URL") or config.dashboard_url,
                "PYTHONUNBUFFERED": "1",
                **{f"ORQEN_{service.upper()}_ADDR": config.addr(service) for service in DEFAULT_ADDRS},
            }
        )
        self.service_env = env
        for spec in config.services:
            self._check()
            await self._spawn(spec, env)
            self._watchers.append(asyncio.create_task(self._supervise(spec, env)))
        await self._wait_ready()
        self._serving = True
        return config.info(secrets)

    async def _infrastructure(self) -> dict[str, str]:
        """The environment with every infrastructure URL set, starting embedded servers for missing ones."""
        env = dict(self.config.env)
        home = self.config.home
        for var, name in _INFRA:
            if env.get(var):
                continue
            self._check()
            data = home.data_dir(name)
            say(f"starting embedded {name} (data in {data})")
            try:
                if name == "pg":
                    server: EmbeddedServer = await asyncio.to_thread(start_postgres, data)
                else:
                    start = start_redis if name == "redis" else start_nats
                    server = await asyncio.to_thread(start, data, log_path=home.logs_dir / f"{name}.log")
            except EmbeddedServerError as err:
                raise StackError(str(err)) from err
            self._infra.append(server)
            env[var] = server.url
        return env

    async def _spawn(self, spec: ServiceSpec, env: Mapping[str, str]) -> None:
        child_env = dict(env)
        metrics = self.config.metrics_port(spec.name)
        if metrics is None:
            child_env.pop("ORQEN_METRICS_PORT", None)
        else:
            child_env["ORQEN_METRICS_PORT"] = str(metrics)
        with open_private_log(self.log_path(spec.name)) as log:
            self._log_offsets[spec.name] = log.tell()
            log.write(f"--- orqen up: starting {spec.name} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            log.flush()
            # Own process group: a Ctrl-C in the terminal reaches only the supervisor, which then
            # stops the services in order instead of all at once.
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env,
                process_group=0,
                umask=PRIVATE_UMASK,
            )
        say(f"started {spec.name} (pid {proc.pid})")
        self._procs[spec.name] = proc
        self._started_at[spec.name] = asyncio.get_running_loop().time()

    async def _supervise(self, spec: ServiceSpec, env: Mapping[str, str]) -> None:
        """Restart the service each time it exits on its own, with backoff, until stop or a crash loop."""
        name = spec.name
        backoff = RestartBackoff(self.config.restart)
        loop = asyncio.get_running_loop()
        while True:
            code = await self._procs[name].wait()
            if self._stopping:
                return
            delay = backoff.next_delay(loop.time() - self._started_at[name]) if self._serving else None
            if delay is None:
                if self._serving:
                    say(
                        f"{name} exited with code {code} after {backoff.restarts} restarts in a row, each within "
                        f"{self.config.restart.stable_after:.0f}s of starting; not restarting it again"
                    )
                self._down_for_good(name, code)
                return
            say(f"{name} exited with code {code}; restarting in {delay:.1f} s (restart {backoff.restarts})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), timeout=delay)
            async with self._spawning:
                if self._stopping:
                    return
                try:
                    await self._spawn(spec, env)
                except OSError as err:
                    say(f"could not restart {name}: {err}")
                    self._down_for_good(name, code)
                    return

    def _down_for_good(self, name: str, code: int) -> None:
        """Record a service that is not restarted again; a start-up in progress and wait() notice at once."""
        self._exited[name] = code
        self._wake.set()

    def _check(self) -> None:
        """Fail start-up at once if stop was asked for or a service died."""
        if self._stopping:
            raise StackError("start-up interrupted")
        if self._exited:
            name, code = next(iter(self._exited.items()))
            raise StackError(
                f"{name} exited with code {code} during start-up; last lines of {self.log_path(name)}:\n"
                + self.log_tail(name)
            )

    async def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.config.edge_port}/readyz"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.ready_timeout
        body: object = None
        async with httpx.AsyncClient(timeout=2.0) as client:
            while loop.time() < deadline:
                self._wake.clear()
                self._check()
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        say("ready")
                        return
                    body = response.json()
                except (httpx.HTTPError, ValueError):
                    body = None
                # Re-probe twice a second, but wake at once if a child dies or stop is asked.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.5)
        raise StackError(self._not_ready_report(url, body))

    def _not_ready_report(self, url: str, body: object) -> str:
        lines = [f"not ready after {self.config.ready_timeout:.0f}s ({url})"]
        pending = not_ready(body) if body is not None else []
        if pending:
            lines.append("not ready: " + ", ".join(pending))
        else:
            lines.append("the edge did not answer /readyz" if body is None else f"/readyz said: {body}")
        # Show the logs of the services /readyz blames; the edge's when it blames nobody we run.
        blamed = [name for name in self._procs if any(name in item for item in pending)] or ["edge"]
        for name in blamed:
            lines.append(f"last lines of {self.log_path(name)}:\n{self.log_tail(name)}")
        return "\n".join(lines)

    async def _stop_service(self, name: str) -> None:
        proc = self._procs[name]
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.config.grace)
            except TimeoutError:
                say(f"{name} did not stop within {self.config.grace:.0f}s; killing it")
                proc.kill()
                await proc.wait()
        say(f"{name} stopped (exit code {proc.returncode})")


def run_foreground(config: StackConfig, *, show_key: bool = True) -> int:
    """`orqen up`: start the stack, print how to use it, supervise until SIGTERM/SIGINT or a crash loop.

    `show_key=False` when the output goes to a log file (`up --detach`): the API key stays out of it.
    """
    return asyncio.run(_foreground(config, show_key))


async def _foreground(config: StackConfig, show_key: bool) -> int:
    home = config.home
    other = home.running_pid()
    if other is not None:
        say(f"an Orqen stack is already running (pid {other})")
        print(config.info(home.secrets(config.env)).render(show_key=show_key), flush=True)
        return 0
    home.write_pid(os.getpid())
    stack = Stack(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stack.request_stop)
    try:
        try:
            info = await stack.start()
        except StackError as err:
            say(f"start-up failed: {err}")
            return 1
        print(info.render(show_key=show_key), flush=True)
        crashed = await stack.wait()
        if crashed is not None:
            say(
                f"{crashed} keeps exiting (last exit code {stack.exit_code(crashed)}); stopping the whole stack. "
                f"Last lines of {stack.log_path(crashed)}:\n{stack.log_tail(crashed)}"
            )
        else:
            say("stopping")
        await stack.stop()
        return 1 if crashed is not None else 0
    finally:
        home.remove_pid(os.getpid())
