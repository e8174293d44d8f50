"""Run a fake upstream in a background thread (tests) or in the foreground (manual runs)."""

from __future__ import annotations

import argparse
import threading
import time
from collections import deque
from typing import Any

import uvicorn

from orqen_common.heap import freeze_startup_heap
from orqen_stack.procs import free_port


class BackgroundServer:
    """A uvicorn server on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.port = port or free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(5)


def main() -> None:
    """Run one fake upstream in the foreground, e.g. `python -m fakes.serve --provider anthropic`.

    The credentials default to the e2e harness's, which is what a stack built with
    `harness.stack_env` (and the latency bench) sends upstream.
    """
    from harness import ANTHROPIC_KEY, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER, OPENAI_KEY

    parser = argparse.ArgumentParser(description="Run a fake upstream provider in the foreground.")
    parser.add_argument("--provider", choices=("openai", "anthropic", "bedrock"), default="openai")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--api-key", help=f"the OpenAI or Anthropic key (default {OPENAI_KEY} / {ANTHROPIC_KEY})")
    parser.add_argument("--aws-access-key-id", default=AWS_ACCESS_KEY_ID)
    parser.add_argument("--aws-secret-access-key", default=AWS_SECRET_ACCESS_KEY)
    parser.add_argument("--bedrock-bearer-token", default=BEDROCK_BEARER)
    args = parser.parse_args()
    if args.api_key is None:
        args.api_key = ANTHROPIC_KEY if args.provider == "anthropic" else OPENAI_KEY
    app = _app(args)
    # Starting up (the SDKs' types and their validators) leaves some 250,000 objects that live as
    # long as the process, and a full collection walked them all: 70 ms alone, and under `make
    # bench` at 64 every request in flight stalled 110-120 ms at once. Frozen as the services
    # freeze theirs, no collection walks them.
    freeze_startup_heap()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None)


def _app(args: argparse.Namespace) -> Any:
    # Run alone, a fake keeps none of its requests: nothing reads them here, and kept for the
    # process's life they stalled it a few thousand requests into `make bench` (every request in
    # flight waited 105-125 ms at once, in the direct rows and through Orqen alike).
    dropped: deque[dict[str, Any]] = deque(maxlen=0)  # each request appended is let go at once
    if args.provider == "anthropic":
        from fakes.anthropic_upstream import FakeAnthropic

        return FakeAnthropic(args.api_key, dropped).app()
    if args.provider == "bedrock":
        from fakes.bedrock_upstream import FakeBedrock

        return FakeBedrock(args.aws_access_key_id, args.aws_secret_access_key, args.bedrock_bearer_token, dropped).app()
    from fakes.openai_upstream import FakeOpenAI

    return FakeOpenAI(args.api_key, dropped).app()


if __name__ == "__main__":
    main()
