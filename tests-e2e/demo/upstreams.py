"""The fake providers and the Stripe fake that `make demo` points the stack at, as one background process.

`python -m demo.upstreams --state FILE` serves the fake OpenAI, Anthropic and Bedrock upstreams
(the ones the end-to-end tests use) and the Stripe fake, writes their URLs and its pid to FILE,
and serves until SIGTERM (which `make down` sends). `start` and `running` are what `make demo`
uses to start it once and find it again.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer
from fakes.stripe_api import StripeFake
from harness import ANTHROPIC_KEY, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER, OPENAI_KEY
from orqen_stack.home import Home
from orqen_stack.procs import pid_alive

_START_SECONDS = 60


def state_file(home: Home) -> Path:
    """Where the demo's background process names its fakes, in the stack's home."""
    return home.root / "demo" / "fakes.json"


def serve(state: Path) -> None:
    """Serve every fake until SIGTERM; `state` names them while they serve."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with (
        BackgroundServer(FakeOpenAI(OPENAI_KEY).app()) as openai,
        BackgroundServer(FakeAnthropic(ANTHROPIC_KEY).app()) as anthropic,
        BackgroundServer(FakeBedrock(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER).app()) as bedrock,
        StripeFake() as stripe,
    ):
        urls = {"openai": openai.url, "anthropic": anthropic.url, "bedrock": bedrock.url}
        written = {"pid": os.getpid(), "upstreams": urls, "stripe": stripe.url}
        state.write_text(json.dumps(written))
        try:
            stopping.wait()
        finally:
            state.unlink(missing_ok=True)


def running(state: Path) -> dict[str, Any] | None:
    """The fakes a live demo process serves (its state), or None."""
    try:
        found: dict[str, Any] = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    if not pid_alive(int(found["pid"])):
        return None
    try:
        httpx.get(found["upstreams"]["openai"] + "/v1/models", timeout=2)
    except httpx.HTTPError:
        return None
    return found


def start(state: Path, log: Path) -> dict[str, Any]:
    """Start the background process (in its own session, so it outlives `make demo`) and wait for it."""
    state.parent.mkdir(parents=True, exist_ok=True)
    state.unlink(missing_ok=True)
    pythonpath = os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo.upstreams", "--state", str(state)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": pythonpath},
            start_new_session=True,
        )
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if (found := running(state)) is not None:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the demo's fake providers did not start; see {log}")


def stop(state: Path) -> bool:
    """Stop the background process named in `state`; False when none runs."""
    found = running(state)
    if found is None:
        return False
    os.kill(int(found["pid"]), signal.SIGTERM)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, help="where the fakes' URLs are written (default: the home's)")
    parser.add_argument("--stop", action="store_true", help="stop the process named in --state")
    args = parser.parse_args()
    args.state = args.state or state_file(Home.from_env())
    if args.stop:
        if stop(args.state):
            print("stopped the demo's fake providers")
        return
    serve(args.state)


if __name__ == "__main__":
    main()
