"""`make demo`: the stack on fake providers, filled with a realistic agent workload, ready to browse.

1. The fake OpenAI, Anthropic and Bedrock upstreams and the Stripe fake run as one background
   process of the demo (demo/upstreams.py), found again on a later run.
2. The stack comes up (`orqen up --detach`, or the running one is reused) with every provider
   pointed at those fakes and billing on the Stripe fake.
3. The bootstrap account gets what an owner would have set up: a fallback chain, a second API
   key, a saved provider key, one model switched off for automatic routing.
4. The workload (demo/workload.py) is replayed through the openai, anthropic and boto3 SDKs.
5. The dashboard URL and the owner's sign-in are printed.

`make down` stops the stack and the fakes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import httpx
from demo import upstreams, workload

from harness import OPENAI_KEY, STRIPE_WEBHOOK_SECRET, billing_env, upstream_env
from orqen_stack.config import StackConfig
from orqen_stack.home import Home


def _stack_env(fakes: dict[str, object]) -> dict[str, str]:
    """The caller's environment with every provider on the fakes and billing on the Stripe fake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STRIPE_"))}
    env.update(upstream_env(fakes["upstreams"]))  # type: ignore[arg-type]
    env.update(billing_env(str(fakes["stripe"])))
    return env


def _set_up_account(edge_url: str, api_key: str) -> None:
    """What an owner sets up in the first days, so the settings pages have something to show."""
    with httpx.Client(base_url=edge_url, headers={"authorization": f"Bearer {api_key}"}, timeout=30) as client:
        client.put(
            "/v1/account/routing/preferences", json={"fallback_models": [workload.FALLBACK_MODEL], "k_floor": 3}
        ).raise_for_status()
        client.post("/v1/account/routing/models/toggle", json={"model": "o1", "enabled": False}).raise_for_status()
        keys = client.get("/v1/account/keys").json()["data"]
        if not any(k["name"] == "ci-pipeline" for k in keys):
            client.post("/v1/account/keys", json={"name": "ci-pipeline"}).raise_for_status()
        # The account's own Groq key (the fake accepts the fake OpenAI key): shown with its last 4 characters.
        client.post("/v1/account/providers", json={"provider": "groq", "api_key": OPENAI_KEY}).raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40, help="agent conversations to replay")
    args = parser.parse_args()

    home = Home.from_env()
    home.ensure()
    state = upstreams.state_file(home)
    fakes = upstreams.running(state)
    if fakes is None and home.running_pid() is not None:
        print(
            "A stack is running that `make demo` did not start: its providers are not the fakes.\n"
            "Stop it with `make down`, then run `make demo` again.",
            file=sys.stderr,
        )
        return 1
    if fakes is None:
        print("Starting the fake providers and the Stripe fake in the background...")
        fakes = upstreams.start(state, home.logs_dir / "demo-fakes.log")
    env = _stack_env(fakes)
    began = time.monotonic()
    # `orqen up --detach` starts the stack, or just reports the one already running.
    if subprocess.run([sys.executable, "-m", "orqen_stack.cli", "up", "--detach"], env=env).returncode != 0:
        return 1
    config = StackConfig.from_env(env)
    info = config.info(home.secrets(env))
    # Stripe's webhooks, signed as Stripe signs them, go to the edge.
    httpx.post(
        f"{fakes['stripe']}/_config/webhooks/orqen",
        data={"url": f"{info.edge_url}/v1/billing/webhook", "secret": STRIPE_WEBHOOK_SECRET},
        headers={"authorization": f"Bearer {env['STRIPE_SECRET_KEY']}"},
        timeout=10,
    ).raise_for_status()
    _set_up_account(info.edge_url, info.api_key)
    print(f"Replaying {args.sessions} agent sessions through the openai, anthropic and boto3 SDKs...")
    os.environ["AWS_BEARER_TOKEN_BEDROCK"] = info.api_key  # boto3 reads its Bedrock API key from here
    workload.run(info.edge_url, info.tls_url, str(info.cert_path), info.api_key, args.sessions)
    print(f"The demo is ready ({time.monotonic() - began:.0f} s).")
    print(info.render())
    print("  The fake providers and the Stripe fake keep running until `make down`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
