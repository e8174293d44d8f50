"""The `orqen` command: run the local stack (up, down, logs), manage API keys and dashboard owners,
list and replay the events accounting and billing could not store."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import nats
from nats.aio.client import Client as NatsClient

from orqen.v1 import accounting_pb2, accounting_pb2_grpc
from orqen_common.events import EventNames, dead_letters, replay
from orqen_common.grpc_client import open_channel
from orqen_stack.config import DEFAULT_ADDRS, StackConfig
from orqen_stack.embedded import NATS_URL_FILE
from orqen_stack.home import Home
from orqen_stack.procs import PRIVATE_UMASK, open_private_log, port_in_use, tail, wait_pid_exit
from orqen_stack.supervisor import run_foreground

LOG_TAIL_LINES = 50
NATS_CONNECT_SECONDS = 5.0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand stores its handler in `handler`."""
    parser = argparse.ArgumentParser(prog="orqen", description="Run a local Orqen stack and manage API keys.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the whole stack (foreground unless --detach)")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background and return once ready")
    # The supervisor half of `up --detach`: its output goes to orqen.log, which must not hold the API key.
    up.add_argument("--to-log", action="store_true", help=argparse.SUPPRESS)
    up.set_defaults(handler=_cmd_up)

    down = commands.add_parser("down", help="stop the stack that `orqen up --detach` started")
    down.set_defaults(handler=_cmd_down)

    logs = commands.add_parser("logs", help="show the stack's logs")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.set_defaults(handler=_cmd_logs)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="KEYS_COMMAND")
    create = key_commands.add_parser("create", help="create an API key (the account is created if needed)")
    create.add_argument("--account", required=True, help="account name")
    create.add_argument("--name", default="default", help="a label for the key (default: %(default)s)")
    create.set_defaults(handler=_cmd_keys_create)

    owners = commands.add_parser("owners", help="manage dashboard owners (email + password logins)")
    owner_commands = owners.add_subparsers(dest="owners_command", required=True, metavar="OWNERS_COMMAND")
    owner = owner_commands.add_parser("create", help="let a person log in to an account's dashboard")
    owner.add_argument("--account", required=True, help="account name (created if needed)")
    owner.add_argument("--email", required=True, help="the owner's email, their login")
    owner.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin instead of prompting for it"
    )
    owner.set_defaults(handler=_cmd_owners_create)

    events = commands.add_parser("events", help="the events accounting or billing could not store (dead letters)")
    event_commands = events.add_subparsers(dest="events_command", required=True, metavar="EVENTS_COMMAND")
    dlq = event_commands.add_parser("dlq", help="list the dead letters, oldest first")
    replayed = event_commands.add_parser(
        "replay", help="put dead letters back on their subject (after a fix) and remove them from the dead letters"
    )
    for command in (dlq, replayed):
        command.add_argument("--consumer", default="*", help="only this consumer's: accounting or billing")
    replayed.add_argument("--request-id", help="only the dead letters of this request")
    dlq.set_defaults(handler=_cmd_events_dlq)
    replayed.set_defaults(handler=_cmd_events_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `orqen` console script."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


# --- up / down / logs --------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace) -> int:
    config = StackConfig.from_env()
    return up_detached(config) if args.detach else run_foreground(config, show_key=not args.to_log)


def up_detached(config: StackConfig) -> int:
    """Start the supervisor in its own session, wait until the stack is ready, and leave it running."""
    home = config.home
    home.ensure()
    running = home.running_pid()
    if running is not None:
        print(f"Orqen is already running (pid {running}).")
        print(config.info(home.secrets(config.env)).render())
        return 0
    if port_in_use(config.edge_port):
        # Otherwise we could mistake whatever answers there for our own edge being ready.
        print(f"port {config.edge_port} is already in use; set ORQEN_EDGE_PORT or stop what uses it", file=sys.stderr)
        return 1
    log = home.supervisor_log
    start_offset = log.stat().st_size if log.exists() else 0
    with open_private_log(log) as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orqen_stack.cli", "up", "--to-log"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**config.env, "ORQEN_HOME": str(home.root)},
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    home.write_pid(proc.pid)
    print(f"Starting Orqen in the background (pid {proc.pid}, log {log}); waiting until it is ready...")
    if _wait_detached(proc, config):
        print(config.info(home.secrets(config.env)).render())
        return 0
    home.remove_pid(proc.pid)
    print(f"Orqen did not start. From {log}:\n{_read_from(log, start_offset)}", file=sys.stderr)
    return 1


def _wait_detached(proc: subprocess.Popen[bytes], config: StackConfig) -> bool:
    """True once /readyz answers 200; False if the supervisor exits first or takes far too long."""
    url = f"http://127.0.0.1:{config.edge_port}/readyz"
    # The supervisor enforces the readiness timeout itself; the margin covers starting Postgres & co.
    deadline = time.monotonic() + config.ready_timeout + 120
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            try:
                proc.wait(timeout=0.5)
                return False
            except subprocess.TimeoutExpired:
                pass
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=config.grace * 3 + 30)
    except subprocess.TimeoutExpired:
        print(f"the supervisor (pid {proc.pid}) is still running", file=sys.stderr)
    return False


def _read_from(path: Path, offset: int, limit: int = 16384) -> str:
    """What `path` gained since `offset` (its last `limit` bytes at most)."""
    with path.open("rb") as handle:
        handle.seek(max(offset, path.stat().st_size - limit))
        return handle.read().decode(errors="replace")


def _cmd_down(_args: argparse.Namespace) -> int:
    return down(StackConfig.from_env())


def down(config: StackConfig) -> int:
    """Stop the running supervisor (which stops everything it started) and wait for it to exit."""
    home = config.home
    pid = home.running_pid()
    if pid is None:
        print(f"No Orqen stack is running (no live supervisor in {home.pid_file}); nothing to stop.")
        return 0
    print(f"Stopping Orqen (pid {pid})...")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        home.remove_pid(pid)
        print("Orqen stopped.")
        return 0
    # Three stop groups, each with its grace period, then the embedded servers.
    timeout = config.grace * 4 + 60
    if not wait_pid_exit(pid, timeout):
        print(f"Orqen (pid {pid}) is still stopping after {timeout:.0f}s; see {home.supervisor_log}", file=sys.stderr)
        return 1
    home.remove_pid(pid)
    print("Orqen stopped.")
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    return show_logs(Home.from_env(), follow=args.follow)


def show_logs(home: Home, *, follow: bool) -> int:
    """Print the end of every log of the stack; with `follow`, keep printing until Ctrl-C."""
    files = sorted(home.logs_dir.glob("*.log"))
    pg_log = home.data_dir("pg") / "log"
    if pg_log.exists():
        files.append(pg_log)
    if not files:
        print(f"No logs yet in {home.logs_dir}.")
        return 0
    command = ["tail", "-n", str(LOG_TAIL_LINES), *(["-F"] if follow else []), *map(str, files)]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0
    except FileNotFoundError:  # no tail(1): print what we can without following
        for path in files:
            print(f"==> {path} <==\n{tail(path, LOG_TAIL_LINES)}\n")
        return 0


# --- keys ------------------------------------------------------------------------------------


def _accounting_target() -> tuple[str, str] | None:
    """The accounting address and the internal token, or None (and why, on stderr)."""
    home = Home.from_env()
    token = os.environ.get("ORQEN_INTERNAL_TOKEN") or home.stored_secret("internal_token")
    if not token:
        print(f"no internal token (ORQEN_INTERNAL_TOKEN or {home.secrets_file}); run `make up` first", file=sys.stderr)
        return None
    return os.environ.get("ORQEN_ACCOUNTING_ADDR", DEFAULT_ADDRS["accounting"]), token


def _refused(err: grpc.aio.AioRpcError, addr: str) -> int:
    if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        print(f"cannot reach the accounting service at {addr}; run `make up` first", file=sys.stderr)
    else:
        print(f"accounting refused: {err.code().name}: {err.details()}", file=sys.stderr)
    return 1


def _cmd_keys_create(args: argparse.Namespace) -> int:
    target = _accounting_target()
    return 1 if target is None else asyncio.run(create_key(*target, args.account, args.name))


async def create_key(addr: str, token: str, account: str, name: str) -> int:
    """Create an API key for `account` (created if missing) and print the plaintext, once."""
    async with open_channel(addr, token) as channel:
        stub = accounting_pb2_grpc.AccountingStub(channel)
        try:
            found = await stub.EnsureAccount(accounting_pb2.EnsureAccountRequest(name=account), timeout=10)
            created = await stub.CreateApiKey(
                accounting_pb2.CreateApiKeyRequest(account_id=found.id, name=name), timeout=10
            )
        except grpc.aio.AioRpcError as err:
            return _refused(err, addr)
    print(created.plaintext)
    print(f"API key {created.api_key_id} ({name}) for account {account!r}; it is shown only once.", file=sys.stderr)
    return 0


# --- owners ----------------------------------------------------------------------------------


def _cmd_owners_create(args: argparse.Namespace) -> int:
    target = _accounting_target()
    if target is None:
        return 1
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    return asyncio.run(create_owner(*target, args.account, args.email, password))


async def create_owner(addr: str, token: str, account: str, email: str, password: str) -> int:
    """Let `email` log in to the dashboard of `account` (created if missing) with `password`."""
    async with open_channel(addr, token) as channel:
        stub = accounting_pb2_grpc.AccountingStub(channel)
        try:
            found = await stub.EnsureAccount(accounting_pb2.EnsureAccountRequest(name=account), timeout=10)
            owner = await stub.CreateOwner(
                accounting_pb2.CreateOwnerRequest(account_id=found.id, email=email, password=password), timeout=30
            )
        except grpc.aio.AioRpcError as err:
            return _refused(err, addr)
    print(f"{owner.email} can now log in to the dashboard of account {account!r} (owner {owner.id}).")
    return 0


# --- events ----------------------------------------------------------------------------------


def _events_target() -> tuple[str, EventNames]:
    """NATS (`ORQEN_NATS_URL`, else the local stack's embedded server) and the stack's event names."""
    url = os.environ.get("ORQEN_NATS_URL")
    if not url:
        embedded = Home.from_env().data_dir("nats") / NATS_URL_FILE
        url = embedded.read_text().strip() if embedded.exists() else "nats://localhost:4222"
    return url, EventNames(os.environ.get("ORQEN_NATS_PREFIX", "orqen"))


def _cmd_events_dlq(args: argparse.Namespace) -> int:
    return asyncio.run(list_dead_letters(*_events_target(), args.consumer))


def _cmd_events_replay(args: argparse.Namespace) -> int:
    return asyncio.run(replay_dead_letters(*_events_target(), args.consumer, args.request_id))


async def _connect_nats(url: str) -> NatsClient | None:
    """A connection to NATS, or None (and why, on stderr)."""
    try:
        # nats-py keeps retrying a first connection that fails, whatever allow_reconnect says: bound it.
        return await asyncio.wait_for(
            nats.connect(url, allow_reconnect=False, error_cb=_reported_below), NATS_CONNECT_SECONDS
        )
    except (OSError, TimeoutError, nats.errors.Error) as err:
        print(f"cannot reach NATS at {url} ({err!r}); run `make up` first or set ORQEN_NATS_URL", file=sys.stderr)
        return None


async def _reported_below(_err: Exception) -> None:
    """nats-py's error callback: the failure is reported once, by _connect_nats."""


async def list_dead_letters(url: str, names: EventNames, consumer: str = "*") -> int:
    """Print one line per dead letter: sequence, when it was parked, by whom, its request, why."""
    nc = await _connect_nats(url)
    if nc is None:
        return 1
    try:
        letters = await dead_letters(nc.jetstream(), names, consumer)
    finally:
        await nc.close()
    for letter in letters:
        parked = letter.parked_at.isoformat(timespec="seconds") if letter.parked_at else "-"
        print(
            f"{letter.seq}\t{parked}\t{letter.consumer}\t{letter.request_id}\t"
            f"{letter.deliveries} deliveries\t{letter.error}"
        )
    print(f"{len(letters)} dead letter(s) on {names.dead_letters(consumer)}", file=sys.stderr)
    return 0


async def replay_dead_letters(url: str, names: EventNames, consumer: str = "*", request_id: str | None = None) -> int:
    """Put the dead letters (of `consumer`, of `request_id`) back on their subject, oldest first."""
    nc = await _connect_nats(url)
    if nc is None:
        return 1
    try:
        js = nc.jetstream()
        letters = [
            letter
            for letter in await dead_letters(js, names, consumer)
            if request_id is None or letter.request_id == request_id
        ]
        for letter in letters:
            await replay(js, names, letter)
    finally:
        await nc.close()
    print(f"{len(letters)} dead letter(s) replayed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
