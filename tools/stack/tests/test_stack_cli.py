"""The `orqen` CLI, the home directory's secrets, and the supervisor (with stand-in services)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from orqen_stack.cli import build_parser, main
from orqen_stack.config import ServiceSpec, StackConfig, default_services
from orqen_stack.embedded import socket_url
from orqen_stack.home import Home
from orqen_stack.procs import free_port, pid_alive, port_in_use
from orqen_stack.readyz import not_ready
from orqen_stack.restarts import RestartBackoff, RestartPolicy
from orqen_stack.supervisor import Stack, StackError

# --- secrets ---------------------------------------------------------------------------


def test_secrets_are_generated_once_stored_0600_and_reused(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    first = home.secrets({})
    assert first.bootstrap_api_key.startswith("sk-orq-") and len(first.internal_token) >= 32
    assert stat.S_IMODE(home.secrets_file.stat().st_mode) == 0o600
    assert Home(tmp_path / "home").secrets({}) == first
    assert home.stored_secret("internal_token") == first.internal_token


def test_secrets_from_the_environment_win_without_replacing_the_stored_ones(tmp_path: Path) -> None:
    home = Home(tmp_path)
    stored = home.secrets({})
    env = {"ORQEN_INTERNAL_TOKEN": "from-env", "ORQEN_BOOTSTRAP_API_KEY": "sk-orq-from-env"}
    assert home.secrets(env).internal_token == "from-env"
    assert home.secrets(env).bootstrap_api_key == "sk-orq-from-env"
    assert home.secrets({}) == stored


def test_ensure_makes_the_stacks_own_files_private_and_leaves_the_rest_alone(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    (home.root / "logs").mkdir(parents=True, mode=0o755)
    (home.root / "logs" / "edge.log").write_text("from an older run\n")
    (home.root / "logs" / "edge.log").chmod(0o644)
    (home.root / "tls").mkdir(mode=0o755)
    (home.root / "notes.txt").write_text("the user's own\n")
    (home.root / "notes.txt").chmod(0o644)
    home.ensure()
    modes = {p.relative_to(home.root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in home.root.rglob("*")}
    assert modes == {"logs": 0o700, "logs/edge.log": 0o600, "tls": 0o700, "notes.txt": 0o644}
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700


def test_home_defaults_to_dot_orqen_and_follows_orqen_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Home.from_env({}).root == tmp_path / ".orqen"
    assert Home.from_env({"ORQEN_HOME": str(tmp_path / "x")}).root == tmp_path / "x"


# --- argument parsing ----------------------------------------------------------------------


def test_cli_parses_every_subcommand() -> None:
    parser = build_parser()
    assert parser.parse_args(["up"]).detach is False
    assert parser.parse_args(["up", "--detach"]).detach is True
    assert parser.parse_args(["up", "-d"]).detach is True
    assert parser.parse_args(["down"]).command == "down"
    assert parser.parse_args(["logs"]).follow is False
    assert parser.parse_args(["logs", "-f"]).follow is True
    args = parser.parse_args(["keys", "create", "--account", "acme"])
    assert (args.account, args.name) == ("acme", "default")
    assert parser.parse_args(["keys", "create", "--account", "acme", "--name", "ci"]).name == "ci"


@pytest.mark.parametrize("argv", [[], ["keys"], ["keys", "create"], ["frobnicate"], ["up", "--bogus"]])
def test_cli_rejects_incomplete_or_unknown_commands(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


# --- down, logs, keys without a stack --------------------------------------------------------


def test_down_without_a_stack_says_so_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORQEN_HOME", str(tmp_path))
    assert main(["down"]) == 0
    assert "No Orqen stack is running" in capsys.readouterr().out


def test_down_removes_a_stale_pid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "orqen.pid").write_text(finished.stdout)
    monkeypatch.setenv("ORQEN_HOME", str(tmp_path))
    assert main(["down"]) == 0
    assert "No Orqen stack is running" in capsys.readouterr().out
    assert not (tmp_path / "orqen.pid").exists()


def test_down_stops_the_recorded_supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in supervisor: its command line mentions orqen, and it exits on SIGTERM.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "orqen-standin"])
    try:
        Home(tmp_path).write_pid(proc.pid)
        monkeypatch.setenv("ORQEN_HOME", str(tmp_path))
        assert main(["down"]) == 0
        assert proc.wait(timeout=5) != 0
        assert not (tmp_path / "orqen.pid").exists()
    finally:
        proc.kill()
        proc.wait()


def test_logs_without_logs_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORQEN_HOME", str(tmp_path))
    assert main(["logs"]) == 0
    assert "No logs yet" in capsys.readouterr().out


def test_logs_shows_the_end_of_each_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "edge.log").write_text("".join(f"line {n}\n" for n in range(100)))
    env = {**os.environ, "ORQEN_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "orqen_stack.cli", "logs"], env=env, capture_output=True, text=True)
    assert out.returncode == 0
    assert "line 99" in out.stdout and "line 10\n" not in out.stdout


def test_keys_create_without_accounting_points_to_make_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORQEN_HOME", str(tmp_path))
    monkeypatch.setenv("ORQEN_INTERNAL_TOKEN", "token")
    monkeypatch.setenv("ORQEN_ACCOUNTING_ADDR", f"127.0.0.1:{free_port()}")
    assert main(["keys", "create", "--account", "acme"]) == 1
    assert "make up" in capsys.readouterr().err


def test_keys_create_without_any_token_points_to_make_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ORQEN_HOME", str(tmp_path))
    monkeypatch.delenv("ORQEN_INTERNAL_TOKEN", raising=False)
    assert main(["keys", "create", "--account", "acme"]) == 1
    assert "make up" in capsys.readouterr().err


# --- configuration -------------------------------------------------------------------------


def test_config_defaults_and_overrides(tmp_path: Path) -> None:
    config = StackConfig.from_env({"ORQEN_HOME": str(tmp_path)})
    assert config.edge_port == 8080 and config.edge_tls_port == 8443
    assert config.addr("optimizer") == "localhost:50051" and config.addr("billing") == "localhost:50054"
    assert [config.metrics_port(s) for s in ("optimizer", "dispatch", "accounting", "billing", "edge")] == [
        9151,
        9152,
        9153,
        9154,
        None,
    ]
    assert (config.ready_timeout, config.grace) == (180.0, 15.0)
    assert [spec.argv[1:] for spec in default_services()] == [
        ("-m", f"orqen_{name}") for name in ("accounting", "billing", "optimizer", "dispatch", "edge")
    ]
    info = config.info(config.home.secrets({}))
    assert (info.edge_url, info.tls_url) == ("http://localhost:8080", "https://localhost:8443")
    assert info.cert_path == tmp_path / "tls" / "cert.pem"

    custom = StackConfig.from_env(
        {
            "ORQEN_HOME": str(tmp_path),
            "ORQEN_EDGE_PORT": "18080",
            "ORQEN_DISPATCH_ADDR": "localhost:15052",
            "ORQEN_DISPATCH_METRICS_PORT": "19152",
            "ORQEN_STACK_READY_TIMEOUT": "5",
        }
    )
    assert custom.ports()["edge HTTP"] == 18080
    assert custom.ports()["dispatch gRPC"] == 15052 and custom.ports()["dispatch metrics"] == 19152
    assert custom.ready_timeout == 5.0


def test_readyz_bodies_name_what_is_not_ready() -> None:
    body = {"status": "not_ready", "version": "1", "checks": {"redis": "ok", "accounting": "unavailable"}}
    assert not_ready(body) == ["accounting (unavailable)"]
    assert not_ready({"ready": False, "deps": [{"name": "nats", "ok": False}, {"name": "pg", "ok": True}]}) == ["nats"]
    assert not_ready({"not_ready": ["optimizer"]}) == ["optimizer"]
    assert not_ready({"optimizer": {"ready": False, "error": "loading model"}}) == ["optimizer (loading model)"]


# --- the supervisor, with stand-in services --------------------------------------------------

FAKE_SERVICE = textwrap.dedent("""
    import http.server, json, os, signal, sys, threading
    name = sys.argv[1]
    home = os.environ["ORQEN_HOME"]
    with open(os.path.join(home, f"env-{name}.json"), "w") as out:
        json.dump({k: v for k, v in os.environ.items() if k.startswith("ORQEN_")}, out)
    if os.environ.get("FAKE_CRASH") == name:
        print(f"{name}: cannot start", flush=True)
        sys.exit(3)
    ran = os.path.join(home, f"ran-{name}")
    if os.environ.get("FAKE_CRASH_ON_RESTART") == name and os.path.exists(ran):
        print(f"{name}: cannot start again", flush=True)
        sys.exit(3)
    open(ran, "w").close()
    stop = threading.Event()
    def on_term(*_):
        with open(os.path.join(home, "stopped.txt"), "a") as out:
            out.write(name + "\\n")
        stop.set()
    signal.signal(signal.SIGTERM, on_term)
    if name == "edge":
        others = ("accounting", "billing", "optimizer", "dispatch")
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                # Like the real edge: ready once everything behind it is up.
                ready = os.environ.get("FAKE_NOT_READY") is None and all(
                    os.path.exists(os.path.join(home, f"env-{other}.json")) for other in others)
                body = {"status": "ready"}
                if not ready:
                    body = {"status": "not_ready", "checks": {"accounting": "unavailable"}}
                self.send_response(200 if ready else 503)
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["ORQEN_EDGE_PORT"])), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"{name}: running", flush=True)
    stop.wait()
""")


def _stack_config(
    home: Path, tmp_path: Path, infra: dict[str, str], restart: RestartPolicy | None = None, **env: str
) -> StackConfig:
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE)
    ports = {
        "ORQEN_EDGE_PORT": str(free_port()),
        "ORQEN_EDGE_TLS_PORT": str(free_port()),
        **{f"ORQEN_{s}_ADDR": f"localhost:{free_port()}" for s in ("OPTIMIZER", "DISPATCH", "ACCOUNTING", "BILLING")},
        **{f"ORQEN_{s}_METRICS_PORT": str(free_port()) for s in ("OPTIMIZER", "DISPATCH", "ACCOUNTING", "BILLING")},
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORQEN_")}
    config = StackConfig.from_env({**base, "ORQEN_HOME": str(home), **ports, **infra, **env})
    services = tuple(ServiceSpec(s.name, (sys.executable, str(script), s.name)) for s in default_services())
    return dataclasses.replace(config, services=services, grace=5.0, restart=restart or RestartPolicy())


@pytest.fixture
def infra(orqen_postgres_url: str, orqen_redis_url: str, orqen_nats_url: str) -> dict[str, str]:
    return {
        "ORQEN_DATABASE_URL": orqen_postgres_url,
        "ORQEN_REDIS_URL": orqen_redis_url,
        "ORQEN_NATS_URL": orqen_nats_url,
    }


@pytest.mark.asyncio
async def test_stack_starts_services_with_their_environment_and_stops_edge_first(
    tmp_path: Path, infra: dict[str, str]
) -> None:
    home = tmp_path / "home"
    config = _stack_config(home, tmp_path, infra)
    stack = Stack(config)
    info = await stack.start()
    try:
        assert info.edge_url == f"http://localhost:{config.edge_port}"
        assert info.api_key == Home(home).secrets({}).bootstrap_api_key
        for name in ("accounting", "billing", "optimizer", "dispatch", "edge"):
            env = json.loads((home / f"env-{name}.json").read_text())
            assert env["ORQEN_DATABASE_URL"] == infra["ORQEN_DATABASE_URL"]
            assert env["ORQEN_INTERNAL_TOKEN"] == Home(home).secrets({}).internal_token
            assert env["ORQEN_ENV"] == "development"
            assert env["ORQEN_HOME"] == str(home.resolve())
            assert env["ORQEN_DISPATCH_ADDR"] == config.addr("dispatch")
            assert env.get("ORQEN_METRICS_PORT") == (None if name == "edge" else str(config.metrics_port(name)))
            assert f"{name}: running" in (home / "logs" / f"{name}.log").read_text()
    finally:
        await stack.stop()
    stopped = (home / "stopped.txt").read_text().split()
    assert stopped[0] == "edge"
    assert set(stopped[1:3]) == {"dispatch", "optimizer"} and set(stopped[3:]) == {"billing", "accounting"}
    assert not port_in_use(config.edge_port)


def not_owner_only(root: Path) -> list[str]:
    """Everything under `root` that others may read: files must be 0600 and folders 0700.

    Run as root, the embedded Postgres runs as its own user, so the home may be 0711 (enter, not list);
    that user's data folder must be owner-only too.
    """
    me = os.geteuid()
    loose = []
    for folder, subfolders, files in os.walk(root):
        path = Path(folder)
        info = path.stat()
        allowed = 0o711 if path == root and me == 0 else 0o700
        if stat.S_IMODE(info.st_mode) & ~allowed:
            loose.append(f"{path} {oct(stat.S_IMODE(info.st_mode))}")
        if info.st_uid != me:
            subfolders.clear()
            continue
        for name in files:
            mode = os.lstat(path / name).st_mode
            if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o077:
                loose.append(f"{path / name} {oct(stat.S_IMODE(mode))}")
    return loose


@pytest.mark.asyncio
async def test_stack_starts_and_stops_the_embedded_servers_it_needs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # A home from before logs were private: readable by everyone.
    (home / "logs").mkdir(parents=True, mode=0o755)
    (home / "logs" / "edge.log").write_text("old\n")
    (home / "logs" / "edge.log").chmod(0o644)
    home.chmod(0o755)
    stack = Stack(_stack_config(home, tmp_path, {}))
    await stack.start()
    try:
        assert not_owner_only(home) == []
        env = json.loads((home / "env-edge.json").read_text())
        assert f"host={home.resolve() / 'pg'}" in env["ORQEN_DATABASE_URL"]
        redis_port = int(env["ORQEN_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        nats_port = int(env["ORQEN_NATS_URL"].rsplit(":", 1)[1])
        assert port_in_use(redis_port) and port_in_use(nats_port)
        pg_pid = int((home / "pg" / "postmaster.pid").read_text().split()[0])
    finally:
        await stack.stop()
    assert not port_in_use(redis_port) and not port_in_use(nats_port) and not pid_alive(pg_pid)
    assert (home / "logs" / "redis.log").exists() and (home / "logs" / "nats.log").exists()


@pytest.mark.asyncio
async def test_a_service_dying_at_start_fails_fast_with_its_log(tmp_path: Path, infra: dict[str, str]) -> None:
    config = _stack_config(tmp_path / "home", tmp_path, infra, FAKE_CRASH="billing", ORQEN_STACK_READY_TIMEOUT="60")
    stack = Stack(config)
    with pytest.raises(StackError, match=r"(?s)billing exited with code 3.*billing: cannot start"):
        await stack.start()
    assert not port_in_use(config.edge_port)


@pytest.mark.asyncio
async def test_readiness_timeout_names_what_is_not_ready(tmp_path: Path, infra: dict[str, str]) -> None:
    config = _stack_config(tmp_path / "home", tmp_path, infra, FAKE_NOT_READY="1", ORQEN_STACK_READY_TIMEOUT="2")
    with pytest.raises(StackError, match=r"(?s)accounting \(unavailable\).*accounting\.log.*accounting: running"):
        await Stack(config).start()


@pytest.mark.asyncio
async def test_stack_refuses_ports_in_use(tmp_path: Path, infra: dict[str, str]) -> None:
    config = _stack_config(tmp_path / "home", tmp_path, infra)
    blocker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "http.server",
        str(config.edge_port),
        "--bind",
        "127.0.0.1",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if port_in_use(config.edge_port):
                break
            await asyncio.sleep(0.05)
        with pytest.raises(StackError, match="edge HTTP"):
            await Stack(config).start()
    finally:
        blocker.terminate()
        await blocker.wait()


def test_restart_backoff_doubles_up_to_its_cap_and_resets_after_a_stable_run() -> None:
    backoff = RestartBackoff(RestartPolicy(first_delay=0.5, max_delay=4.0, stable_after=60.0, max_restarts=6))
    assert [backoff.next_delay(uptime=1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.next_delay(uptime=1.0) is None  # six quick exits in a row: a crash loop
    assert backoff.next_delay(uptime=60.0) == 0.5 and backoff.restarts == 1


async def _new_pid(stack: Stack, name: str, old: int) -> int:
    """The pid of `name` once the supervisor has restarted it (bounded by the number of polls, not by time)."""
    for _ in range(400):
        pid = stack.pids().get(name)
        if pid is not None and pid != old:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} was not restarted")


async def _logged(path: Path, line: str, times: int) -> None:
    """Wait until `line` is in the log `times` times (a restarted service has finished starting)."""
    for _ in range(400):
        if (await asyncio.to_thread(path.read_text)).count(line) >= times:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{line!r} not {times} times in {path}")


@pytest.mark.asyncio
async def test_a_crashed_service_is_restarted_with_backoff_while_the_others_keep_running(
    tmp_path: Path, infra: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    config = _stack_config(home, tmp_path, infra, RestartPolicy(first_delay=0.1, max_delay=1.0))
    stack = Stack(config)
    await stack.start()
    try:
        before = stack.pids()
        os.kill(before["dispatch"], signal.SIGKILL)
        log = home / "logs" / "dispatch.log"
        first = await _new_pid(stack, "dispatch", before["dispatch"])
        await _logged(log, "dispatch: running", 2)
        os.kill(first, signal.SIGKILL)
        second = await _new_pid(stack, "dispatch", first)
        await _logged(log, "dispatch: running", 3)
        after = stack.pids()
        assert after.pop("dispatch") == second
        before.pop("dispatch")
        assert after == before  # nothing else was restarted
        assert port_in_use(config.edge_port)
        assert stack.exit_code("dispatch") is None
    finally:
        await stack.stop()
    err = capsys.readouterr().err
    assert "dispatch exited with code -9; restarting in 0.1 s (restart 1)" in err
    assert "dispatch exited with code -9; restarting in 0.2 s (restart 2)" in err
    assert f"started dispatch (pid {second})" in err


@pytest.mark.asyncio
async def test_stop_during_a_restart_backoff_restarts_nothing(
    tmp_path: Path, infra: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    stack = Stack(_stack_config(home, tmp_path, infra, RestartPolicy(first_delay=30.0)))
    await stack.start()
    try:
        os.kill(stack.pids()["dispatch"], signal.SIGKILL)
        for _ in range(400):
            if "restarting in 30.0 s" in capsys.readouterr().err:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the supervisor never scheduled the restart")
    finally:
        await stack.stop()  # returns without waiting out the 30 s backoff
    assert stack.pids() == {}
    assert (home / "logs" / "dispatch.log").read_text().count("dispatch: running") == 1
    assert "started dispatch" not in capsys.readouterr().err


@pytest.mark.asyncio
async def test_a_service_that_keeps_crashing_after_restarts_stops_being_restarted(
    tmp_path: Path, infra: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    policy = RestartPolicy(first_delay=0.01, max_restarts=3)
    stack = Stack(_stack_config(home, tmp_path, infra, policy, FAKE_CRASH_ON_RESTART="dispatch"))
    await stack.start()
    try:
        os.kill(stack.pids()["dispatch"], signal.SIGKILL)
        assert await asyncio.wait_for(stack.wait(), timeout=60) == "dispatch"
        assert stack.exit_code("dispatch") == 3
        assert "dispatch: cannot start again" in stack.log_tail("dispatch")
    finally:
        await stack.stop()
    err = capsys.readouterr().err
    assert "(restart 3)" in err and "(restart 4)" not in err
    assert "dispatch exited with code 3 after 3 restarts in a row" in err


def test_socket_urls_name_the_socket_directory_and_port() -> None:
    assert socket_url(Path("/tmp/pg"), 45678, "orqen") == "postgresql://postgres:@/orqen?host=/tmp/pg&port=45678"


# --- the real stack, detached, as `make up` runs it -----------------------------------------


def _started_pids(log: Path, name: str) -> list[int]:
    """The pids the supervisor log says `name` was started with, in order."""
    return [int(pid) for pid in re.findall(rf"started {name} \(pid (\d+)\)", log.read_text())]


def test_detached_stack_keeps_its_secrets_private_and_restarts_a_killed_service(
    tmp_path: Path, orqen_test_env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORQEN_")}
    env.update(orqen_test_env)
    env.update({"ORQEN_HOME": str(home), "ORQEN_EDGE_PORT": str(free_port()), "ORQEN_EDGE_TLS_PORT": str(free_port())})
    for service in ("optimizer", "dispatch", "accounting", "billing"):
        env[f"ORQEN_{service.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
        env[f"ORQEN_{service.upper()}_METRICS_PORT"] = str(free_port())
    cli = [sys.executable, "-m", "orqen_stack.cli"]
    up = subprocess.run([*cli, "up", "--detach"], env=env, capture_output=True, text=True, timeout=600, check=False)
    supervisor_log = home / "logs" / "orqen.log"
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        stored = json.loads((home / "secrets.json").read_text())
        key, password = stored["bootstrap_api_key"], stored["bootstrap_owner_password"]
        # The terminal that ran `make up` gets them; no log file does.
        assert key in up.stdout and password in up.stdout
        assert f"Dashboard  http://localhost:{env['ORQEN_EDGE_PORT']}/dashboard" in up.stdout
        for _ in range(100):  # the supervisor announces itself just after the parent saw /readyz
            if "Orqen is up." in supervisor_log.read_text():
                break
            time.sleep(0.1)
        assert "Orqen is up." in supervisor_log.read_text()
        for secret in (key, password):
            assert [log.name for log in (home / "logs").iterdir() if secret in log.read_text(errors="replace")] == []
        assert not_owner_only(home) == []
        # A second `make up` finds the stack running and prints the same owner's password again.
        again = subprocess.run(
            [*cli, "up", "--detach"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert again.returncode == 0 and password in again.stdout

        killed = _started_pids(supervisor_log, "dispatch")[-1]
        os.kill(killed, signal.SIGKILL)
        edge = f"http://127.0.0.1:{env['ORQEN_EDGE_PORT']}"
        with httpx.Client(base_url=edge, headers={"authorization": f"Bearer {key}"}, timeout=10) as http:
            for _ in range(600):
                # Everything that does not need dispatch keeps answering while it is away.
                assert http.get("/healthz").status_code == 200
                assert http.get("/v1/account/keys").status_code == 200
                restarted = _started_pids(supervisor_log, "dispatch")[-1] != killed
                if restarted and http.get("/readyz").status_code == 200:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"dispatch did not come back:\n{supervisor_log.read_text()}")
            assert http.get("/v1/models").status_code == 200  # served by dispatch again
            # The printed owner signs in to the dashboard of the bootstrap account.
            login = httpx.post(
                f"{edge}/v1/dashboard/login", json={"email": "owner@orqen.local", "password": password}, timeout=10
            )
            assert login.status_code == 200, login.text
        assert pid_alive(_started_pids(supervisor_log, "dispatch")[-1])
        assert "dispatch exited with code -9; restarting in 0.5 s (restart 1)" in supervisor_log.read_text()
    finally:
        down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert down.returncode == 0, down.stdout + down.stderr
    assert key not in supervisor_log.read_text()
    assert password not in supervisor_log.read_text()
