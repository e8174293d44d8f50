"""`make bench-proxy`: proxied uploads and binary answers, time and memory, through the whole stack.

A transcription upload of each size goes (a) straight to the fake OpenAI and (b) through
Orqen to that same fake (edge -> gRPC stream -> dispatch -> HTTP to the fake), and a speech
answer (300 KB of binary audio) comes back the same two ways. Printed per row: the median
time of each way, the throughput through Orqen, and how much the edge's and dispatch's peak
resident memory grew during the Orqen runs (reset before each row through
/proc/<pid>/clear_refs, so Linux only): an upload that were held whole would grow one of them
by at least its size.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.latency import fake_servers
from harness import OPENAI_KEY, reset_peak_rss, rss, stack_env
from orqen_stack.config import StackConfig
from orqen_stack.supervisor import Stack

MB = 1024 * 1024


async def timed_upload(client: httpx.AsyncClient, url: str, key: str, audio: bytes) -> float:
    started = time.perf_counter()
    response = await client.post(
        url,
        headers={"authorization": f"Bearer {key}"},
        data={"model": "whisper-1"},
        files={"file": ("bench.mp3", audio, "audio/mpeg")},
    )
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return time.perf_counter() - started


async def timed_speech(client: httpx.AsyncClient, url: str, key: str) -> float:
    started = time.perf_counter()
    body = {"model": "tts-1", "voice": "alloy", "input": "Hello from the benchmark"}
    response = await client.post(url, headers={"authorization": f"Bearer {key}"}, json=body)
    if response.status_code != 200 or len(response.content) < 100_000:
        raise RuntimeError(f"{url} answered {response.status_code}")
    return time.perf_counter() - started


async def run(repeats: int) -> None:
    with fake_servers() as urls, tempfile.TemporaryDirectory(prefix="orqen-bench-") as home:
        stack = Stack(StackConfig.from_env(stack_env(urls, Path(home), f"bench{os.getpid()}")))
        info = await stack.start()
        pids = {name: stack.pids()[name] for name in ("edge", "dispatch")}
        fake, edge = urls["openai"] + "/v1", info.edge_url + "/v1"
        try:
            header = (
                f"{'call':<22}{'direct p50 ms':>14}{'orqen p50 ms':>14}{'orqen MB/s':>12}"
                f"{'edge peak +MB':>15}{'dispatch peak +MB':>19}"
            )
            print(header)
            print("-" * len(header))
            async with httpx.AsyncClient(timeout=300) as client:
                await timed_upload(client, edge + "/audio/transcriptions", info.api_key, b"warm" * 1000)
                for size in (1 * MB, 25 * MB, 50 * MB):
                    audio = hashlib.sha256(str(size).encode()).digest() * (size // 32)
                    direct = [
                        await timed_upload(client, fake + "/audio/transcriptions", OPENAI_KEY, audio)
                        for _ in range(repeats)
                    ]
                    baseline = _reset(pids)
                    through = [
                        await timed_upload(client, edge + "/audio/transcriptions", info.api_key, audio)
                        for _ in range(repeats)
                    ]
                    growth = _growth(pids, baseline)
                    d50, o50 = statistics.median(direct), statistics.median(through)
                    print(
                        f"{f'upload {size // MB} MB':<22}{d50 * 1000:>14.1f}{o50 * 1000:>14.1f}"
                        f"{size / MB / o50:>12.1f}{growth['edge']:>15.1f}{growth['dispatch']:>19.1f}",
                        flush=True,
                    )
                direct = [await timed_speech(client, fake + "/audio/speech", OPENAI_KEY) for _ in range(repeats * 5)]
                baseline = _reset(pids)
                through = [await timed_speech(client, edge + "/audio/speech", info.api_key) for _ in range(repeats * 5)]
                growth = _growth(pids, baseline)
                d50, o50 = statistics.median(direct), statistics.median(through)
                print(
                    f"{'speech 300 KB back':<22}{d50 * 1000:>14.1f}{o50 * 1000:>14.1f}{0.3 / o50:>12.1f}"
                    f"{growth['edge']:>15.1f}{growth['dispatch']:>19.1f}"
                )
        finally:
            await stack.stop()


def _reset(pids: dict[str, int]) -> dict[str, int]:
    """Reset each process's peak; its resident memory now."""
    for pid in pids.values():
        reset_peak_rss(pid)
    return {name: rss(pid)[1] for name, pid in pids.items()}


def _growth(pids: dict[str, int], baseline: dict[str, int]) -> dict[str, float]:
    return {name: (rss(pid)[0] - baseline[name]) / MB for name, pid in pids.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="calls per row each way")
    asyncio.run(run(parser.parse_args().repeats))


if __name__ == "__main__":
    main()
