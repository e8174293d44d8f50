"""The whole stack, started the way `make up` starts it, against fake OpenAI, Anthropic and Bedrock upstreams."""

import base64
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from secrets_scan import SecretScanner, scan_database, scan_logs, stored_key_hashes

from accounts import SECRETS_MADE
from fakes.anthropic_upstream import FakeAnthropic
from fakes.bedrock_upstream import FakeBedrock
from fakes.openai_upstream import FakeOpenAI
from fakes.serve import BackgroundServer
from fakes.stripe_api import StripeFake
from harness import (
    ANTHROPIC_KEY,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    BEDROCK_BEARER,
    OPENAI_KEY,
    STRIPE_WEBHOOK_SECRET,
    stack_env,
)
from orqen_stack.config import StackConfig, StackInfo
from orqen_stack.supervisor import Stack


@dataclass
class Upstreams:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    bedrock: FakeBedrock
    urls: dict[str, str]

    def by_name(self, name: str) -> FakeOpenAI | FakeAnthropic | FakeBedrock:
        return {"openai": self.openai, "anthropic": self.anthropic, "bedrock": self.bedrock}[name]


@dataclass
class RunningStack:
    info: StackInfo
    upstream: FakeOpenAI
    upstreams: Upstreams
    env: dict[str, str]
    home: Path
    # What the services run with: infrastructure URLs (embedded or not) and secrets.
    service_env: dict[str, str]
    stripe: StripeFake
    # Process id of each service.
    pids: dict[str, int]


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    openai = FakeOpenAI(OPENAI_KEY)
    anthropic = FakeAnthropic(ANTHROPIC_KEY)
    bedrock = FakeBedrock(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BEDROCK_BEARER)
    with (
        BackgroundServer(openai.app()) as openai_server,
        BackgroundServer(anthropic.app()) as anthropic_server,
        BackgroundServer(bedrock.app()) as bedrock_server,
    ):
        urls = {"openai": openai_server.url, "anthropic": anthropic_server.url, "bedrock": bedrock_server.url}
        yield Upstreams(openai, anthropic, bedrock, urls)


@pytest.fixture(scope="session")
def stripe_api() -> Iterator[StripeFake]:
    with StripeFake() as fake:
        yield fake


@pytest.fixture(scope="session")
async def stack(upstreams: Upstreams, stripe_api: StripeFake) -> AsyncIterator[RunningStack]:
    # Outside pytest's temporary folders: a concurrent pytest session prunes old ones, and with them
    # a running stack's embedded Postgres data, logs and secrets.
    home = Path(tempfile.mkdtemp(prefix="orqen-e2e-"))
    env = stack_env(upstreams.urls, home, f"e2e{os.getpid()}", stripe_api.url)
    running = Stack(StackConfig.from_env(env))
    info = await running.start()
    # Stripe's webhooks, as the fake signs and sends them, go to the edge.
    stripe_api.send_webhooks_to(f"{info.edge_url}/v1/billing/webhook", STRIPE_WEBHOOK_SECRET)
    # boto3 clients in the tests use the Orqen key as their Bedrock API key, read from the environment.
    previous = os.environ.get("AWS_BEARER_TOKEN_BEDROCK")
    os.environ["AWS_BEARER_TOKEN_BEDROCK"] = info.api_key
    try:
        yield RunningStack(
            info, upstreams.openai, upstreams, env, home, running.service_env, stripe_api, running.pids()
        )
        # After every test: no secret the run used is in a database row, or (once the services
        # have stopped and flushed) in a log line.
        scanner = SecretScanner(
            secrets_of_the_run(running.service_env), await stored_key_hashes(running.service_env["ORQEN_DATABASE_URL"])
        )
        leaks = await scan_database(scanner, running.service_env["ORQEN_DATABASE_URL"])
        rows = scanner.lines_scanned
    finally:
        if previous is None:
            os.environ.pop("AWS_BEARER_TOKEN_BEDROCK", None)
        else:
            os.environ["AWS_BEARER_TOKEN_BEDROCK"] = previous
        await running.stop()
    leaks += scan_logs(scanner, StackConfig.from_env(env).home.logs_dir)
    shutil.rmtree(home, ignore_errors=True)
    assert rows > 0 and scanner.lines_scanned > rows, "the secrets scan found no database rows or no log lines"
    assert not leaks, "secrets found after the run:\n" + "\n".join(f"{leak.what} in {leak.where}" for leak in leaks)


def secrets_of_the_run(service_env: dict[str, str]) -> dict[str, str | bytes]:
    """Every secret the stack and the tests used, by what it is."""
    names = (
        "ORQEN_INTERNAL_TOKEN",
        "ORQEN_BOOTSTRAP_API_KEY",
        "ORQEN_BOOTSTRAP_OWNER_PASSWORD",
        "STRIPE_SECRET_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
    )
    secrets: dict[str, str | bytes] = {name: service_env[name] for name in names if service_env.get(name)}
    secrets["Bedrock API key"] = BEDROCK_BEARER
    # Each key of the credentials key ring, as written (base64) and as its raw bytes would be encoded.
    for entry in service_env.get("ORQEN_CREDENTIALS_KEYS", "").split(","):
        key_id, _, encoded = entry.partition(":")
        secrets[f"credentials key {key_id}"] = encoded
        secrets[f"credentials key {key_id} (raw)"] = base64.b64decode(encoded)
    if redis_password := urlsplit(service_env["ORQEN_REDIS_URL"]).password:
        secrets["Redis password"] = redis_password
    return secrets | SECRETS_MADE
