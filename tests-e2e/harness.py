"""The environment of a whole Orqen stack wired to the fake upstreams (tests and benchmarks).

Every port is a free one and the stack keeps its state under `home`, so a developer's
running stack is untouched. Postgres, Redis and NATS are embedded unless ORQEN_TEST_*_URL
point at servers.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx

from fakes.stripe_api import PRO_PRICE_ID, SECRET_KEY
from orqen_stack.procs import free_port

STRIPE_WEBHOOK_SECRET = "whsec_orqen_e2e"

OPENAI_KEY = "sk-upstream-e2e"
ANTHROPIC_KEY = "sk-ant-upstream-e2e"
AWS_ACCESS_KEY_ID = "AKIAORQENE2ETESTKEY1"
AWS_SECRET_ACCESS_KEY = "orqen/e2e/secret/access/key/0123456789"
BEDROCK_BEARER = "bedrock-api-key-e2e"
# The operator's prices of the stack under test: one model of the operator-defined provider.
OPERATOR_PRICES = Path(__file__).parent / "fakes" / "operator_prices.json"


def stack_env(
    upstream_urls: dict[str, str], home: Path, nats_prefix: str, stripe_url: str | None = None
) -> dict[str, str]:
    """Environment for `Stack(StackConfig.from_env(env))` against the three fake providers,
    and billing on the Stripe fake at `stripe_url` (local billing mode without it)."""
    # The caller's own provider, AWS and Stripe settings must not leak into the stack under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORQEN_", "AWS_", "STRIPE_"))}
    for name in ("DATABASE", "REDIS", "NATS"):
        if url := os.environ.get(f"ORQEN_TEST_{name}_URL"):
            env[f"ORQEN_{name}_URL"] = url
    env.update(
        {
            "ORQEN_HOME": str(home),
            "ORQEN_NATS_PREFIX": nats_prefix,
            "ORQEN_EDGE_PORT": str(free_port()),
            "ORQEN_EDGE_TLS_PORT": str(free_port()),
            **upstream_env(upstream_urls),
            "ORQEN_MAX_BODY_BYTES": str(256 * 1024),
            # Tests make the fake providers fail on purpose, hundreds of times over one shared
            # stack: an open circuit would fail unrelated tests. Breakers are shown against the
            # same fakes in services/dispatch/tests/integration/test_resilience_http.py.
            "ORQEN_BREAKER_THRESHOLD": "1000000",
            "ORQEN_LOG_FORMAT": "json",
            "ORQEN_PRICES_FILE": str(OPERATOR_PRICES),
        }
    )
    if stripe_url is not None:
        env.update(billing_env(stripe_url))
    for service in ("optimizer", "dispatch", "accounting", "billing"):
        env[f"ORQEN_{service.upper()}_ADDR"] = f"127.0.0.1:{free_port()}"
        env[f"ORQEN_{service.upper()}_METRICS_PORT"] = str(free_port())
    return env


def upstream_env(upstream_urls: dict[str, str]) -> dict[str, str]:
    """Every provider (OpenAI, Anthropic, Bedrock, Groq, an operator-defined one) on the fakes at `upstream_urls`."""
    return {
        "ORQEN_OPENAI_BASE_URL": upstream_urls["openai"] + "/v1",
        "OPENAI_API_KEY": OPENAI_KEY,
        "ORQEN_ANTHROPIC_BASE_URL": upstream_urls["anthropic"],
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ORQEN_BEDROCK_ENDPOINT_URL": upstream_urls["bedrock"],
        # The fake serves Bedrock's control plane (the model lists) beside its runtime.
        "ORQEN_BEDROCK_CONTROL_ENDPOINT_URL": upstream_urls["bedrock"],
        # Groq and an operator-defined provider speak OpenAI's format: the fake OpenAI stands in.
        "ORQEN_GROQ_BASE_URL": upstream_urls["openai"] + "/v1",
        "GROQ_API_KEY": OPENAI_KEY,
        "ORQEN_COMPATIBLE_PROVIDERS": json.dumps(
            {"local": {"base_url": upstream_urls["openai"] + "/v1", "api_key_env": "LOCAL_LLM_KEY"}}
        ),
        "LOCAL_LLM_KEY": OPENAI_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        # Accounts' own OpenAI-compatible endpoints here are the fakes, on 127.0.0.1.
        "ORQEN_ALLOW_PRIVATE_BASE_URLS": "true",
    }


def billing_env(stripe_url: str) -> dict[str, str]:
    """Billing on the Stripe fake, with a small Free plan so tests can see overage."""
    plans = {
        "free": {"base_cents": 0, "included_tokens": 1_000_000, "overage_cents_per_million": 0},
        "pro": {
            "base_cents": 4900,
            "included_tokens": 20_000_000,
            "overage_cents_per_million": 200,
            "stripe_price_id": PRO_PRICE_ID,
        },
    }
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "ORQEN_STRIPE_API_BASE": stripe_url,
        "ORQEN_PLANS": json.dumps(plans),
    }


async def request_log_entry(edge_url: str, api_key: str, request_id: str) -> dict[str, Any]:
    """The request log entry of `request_id`, once accounting has consumed the request's event."""
    async with httpx.AsyncClient(base_url=edge_url, headers={"authorization": f"Bearer {api_key}"}) as http:
        for _ in range(100):
            response = await http.get(f"/v1/account/requests/{request_id}")
            if response.status_code == 200:
                return response.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)
    raise AssertionError(f"{request_id} never reached the request log")


def reset_peak_rss(pid: int) -> None:
    """Start a new high-water mark of a process's resident memory (Linux: clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def rss(pid: int) -> tuple[int, int]:
    """(peak since the last reset, current) resident memory of a process in bytes (Linux: VmHWM, VmRSS)."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                fields[name] = int(value.split()[0]) * 1024
    return fields["VmHWM"], fields["VmRSS"]
