"""The whole stack, started the way `make up` starts it, against a fake OpenAI upstream.

The stack starts its own embedded Postgres, Redis and NATS unless ORQEN_TEST_*_URL
point at servers, and every port is a free one, so a developer's running stack is untouched.
"""

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer, free_port
from orqen_common.stack import Stack
from orqen_common.stack_config import StackConfig, StackInfo

UPSTREAM_KEY = "sk-upstream-e2e"


@dataclass
class RunningStack:
    info: StackInfo
    upstream: FakeOpenAI
    env: dict[str, str]
    home: Path


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    upstream = FakeOpenAI(UPSTREAM_KEY)
    with BackgroundServer(upstream.app()) as server:
        yield upstream, server.url


@pytest.fixture(scope="session")
async def stack(
    fake_openai: tuple[FakeOpenAI, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningStack]:
    home = tmp_path_factory.mktemp("orqen-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORQEN_")}
    for name in ("DATABASE", "REDIS", "NATS"):
        if url := os.environ.get(f"ORQEN_TEST_{name}_URL"):
            env[f"ORQEN_{name}_URL"] = url
    env.update(
        {
            "ORQEN_HOME": str(home),
            "ORQEN_NATS_PREFIX": f"e2e{os.getpid()}",
            "ORQEN_EDGE_PORT": str(free_port()),
            "ORQEN_EDGE_TLS_PORT": str(free_port()),
            "ORQEN_OPENAI_BASE_URL": fake_openai[1] + "/v1",
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "ORQEN_MAX_BODY_BYTES": str(256 * 1024),
            "ORQEN_LOG_FORMAT": "json",
        }
    )
    for service in ("optimizer", "dispatch", "accounting", "billing"):
        env[f"ORQEN_{service.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
        env[f"ORQEN_{service.upper()}_METRICS_PORT"] = str(free_port())
    running = Stack(StackConfig.from_env(env))
    info = await running.start()
    try:
        yield RunningStack(info, fake_openai[0], env, home)
    finally:
        await running.stop()
