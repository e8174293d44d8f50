"""Run a fake upstream in a background thread (tests) or in the foreground (manual runs)."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any

import uvicorn


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    from fakes.openai_upstream import FakeOpenAI

    parser = argparse.ArgumentParser(description="Run the fake OpenAI upstream in the foreground.")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--api-key", default="sk-upstream-test")
    args = parser.parse_args()
    uvicorn.run(FakeOpenAI(args.api_key).app(), host="127.0.0.1", port=args.port, log_config=None)


if __name__ == "__main__":
    main()
