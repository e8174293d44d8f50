"""The dashboard at scale: each page's server time and the first page load's bytes, over the ledger
of `make bench-accounting` (1,000,000 request rows for one account by default).

Starts the whole stack (`make up`'s way; Postgres, Redis and NATS embedded unless ORQEN_TEST_*_URL
are set), writes the rows through bench/accounting.py's loader (the ledger's own batch path, with
rollups and sessions), signs in as an owner of the account and measures, one request at a time:

1. server time: p50/p95 of each page (every nav page, one request's and one session's page), as
   the round trip of a GET on localhost (target: p95 <= 100 ms);
2. first load: the bytes a browser with an empty cache transfers to show the page (HTML, CSS,
   scripts, the favicon; compressed sizes as sent), from Chromium's own network events
   (target: <= 300 KB). Skipped without Chromium.

A page that answers 404 is not built on this branch yet and is listed as such.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import Browser, async_playwright

from bench.accounting import seed
from bench.latency import percentile
from dashboard_browser import CHROMIUM
from harness import stack_env
from orqen_accounting.owners import OwnerRepository
from orqen_common.auth import hash_api_key
from orqen_common.db import create_pool, plain_postgres_url
from orqen_edge.dashboard.web import NAV
from orqen_stack.config import StackConfig
from orqen_stack.supervisor import Stack

SERVER_P95_TARGET_MS = 100
FIRST_LOAD_TARGET_KB = 300


async def pages(client: httpx.AsyncClient) -> list[str]:
    """Every nav page, and the pages of the newest request and session (their ids from the account API)."""
    found = [item.path for item in NAV]
    requests = (await client.get("/v1/account/requests", params={"limit": 1})).json()["data"]
    sessions = (await client.get("/v1/account/sessions", params={"limit": 1})).json()["data"]
    if requests:
        found.append(f"/dashboard/requests/{requests[0]['request_id']}")
    if sessions:
        found.append(f"/dashboard/sessions/{sessions[0]['session_id']}")
    return found


async def server_times(client: httpx.AsyncClient, path: str, samples: int) -> tuple[float, float] | None:
    """(p50, p95) in ms of GET `path`; None when the page does not exist."""
    for _ in range(5):  # warm the connection, the session and Postgres' cache
        warm = await client.get(path)
        if warm.status_code == 404:
            return None
        warm.raise_for_status()
    timings = []
    for _ in range(samples):
        began = time.perf_counter()
        (await client.get(path)).raise_for_status()
        timings.append(time.perf_counter() - began)
    return percentile(timings, 50), percentile(timings, 95)


async def first_load(browser: Browser, edge_url: str, cookie: str, path: str) -> int:
    """Bytes transferred (encoded as sent, headers included) to open `path` with an empty cache."""
    context = await browser.new_context(base_url=edge_url)
    try:
        await context.add_cookies([{"name": "orqen_session", "value": cookie, "url": edge_url}])
        page = await context.new_page()
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.enable")
        await cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        sizes: list[int] = []
        cdp.on("Network.loadingFinished", lambda event: sizes.append(int(event["encodedDataLength"])))
        await page.goto(path, wait_until="networkidle")
        return sum(sizes)
    finally:
        await context.close()


async def first_loads(edge_url: str, cookie: str, paths: list[str]) -> dict[str, int]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            return {path: await first_load(browser, edge_url, cookie, path) for path in paths}
        finally:
            await browser.close()


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> str:
    response = await client.post("/v1/dashboard/login", json={"email": email, "password": password})
    response.raise_for_status()
    return client.cookies["orqen_session"]


async def bench(edge_url: str, api_key: str, email: str, password: str, samples: int) -> None:
    async with (
        httpx.AsyncClient(base_url=edge_url, headers={"authorization": f"Bearer {api_key}"}, timeout=60) as api,
        httpx.AsyncClient(base_url=edge_url, timeout=60) as browser_like,
    ):
        paths = await pages(api)
        cookie = await sign_in(browser_like, email, password)
        times: dict[str, tuple[float, float] | None] = {}
        for path in paths:
            times[path] = await server_times(browser_like, path, samples)
    built = [p for p in paths if times[p] is not None]
    loads = await first_loads(edge_url, cookie, built) if os.access(CHROMIUM, os.X_OK) else {}
    print(f"{'page':<60}{'p50 ms':>8}{'p95 ms':>8}{'first load KB':>15}")
    for path in paths:
        timing = times[path]
        if timing is None:
            print(f"{path:<60}{'not on this branch yet (404)':>31}")
            continue
        load = f"{loads[path] / 1024:.0f}" if path in loads else "-"
        print(f"{path:<60}{timing[0]:>8.1f}{timing[1]:>8.1f}{load:>15}")
    worst = max((t[1] for t in times.values() if t), default=0.0)
    heaviest = max(loads.values(), default=0) / 1024
    print(
        f"worst p95 {worst:.1f} ms (target <= {SERVER_P95_TARGET_MS}); heaviest first load {heaviest:.0f} KB "
        f"(target <= {FIRST_LOAD_TARGET_KB})" + ("" if loads else "; first loads skipped: no Chromium")
    )


async def run(rows: int, samples: int) -> None:
    with tempfile.TemporaryDirectory(prefix="orqen-bench-") as home:
        nowhere = "http://127.0.0.1:9"  # no provider is called
        env = stack_env({"openai": nowhere, "anthropic": nowhere, "bedrock": nowhere}, Path(home), f"dash{os.getpid()}")
        # The optimizer loads its model for minutes on a busy machine; nothing here waits on it anyway.
        env["ORQEN_STACK_READY_TIMEOUT"] = "600"
        stack = Stack(StackConfig.from_env(env))
        info = await stack.start()
        pool = await create_pool(plain_postgres_url(stack.service_env["ORQEN_DATABASE_URL"]), 4, "accounting")
        try:
            print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
            account_id = str(
                await pool.fetchval("SELECT account_id FROM api_keys WHERE key_hash = $1", hash_api_key(info.api_key))
            )
            await seed(pool, account_id, rows)
            # An owner of the bench's own: a reused database may hold the bootstrap owner with another password.
            email, password = f"bench-{secrets.token_hex(4)}@orqen.local", secrets.token_urlsafe(18)
            await OwnerRepository(pool).create(account_id, email, password)
            await bench(info.edge_url, info.api_key, email, password, samples)
            print(f"machine: load average {os.getloadavg()[0]:.2f} at the end")
        finally:
            await pool.close()
            await stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="request rows of the account")
    parser.add_argument("--samples", type=int, default=100, help="timed GETs per page")
    args = parser.parse_args(argv)
    asyncio.run(run(args.rows, args.samples))


if __name__ == "__main__":
    main()
