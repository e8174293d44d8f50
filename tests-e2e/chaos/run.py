"""`make chaos`: the full fault run, printed as the README's table.

The service faults (every service killed under load, Redis and NATS frozen, Postgres restarted;
tests-e2e/chaos/service_faults.py), then the provider faults (tests-e2e/chaos/provider_faults.py),
in one table: fault → what a client saw → records lost → time to recover.

    PYTHONPATH=tests-e2e .venv/bin/python tests-e2e/chaos/run.py [--requests 10000] [--pause 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from chaos.provider_faults import provider_fault_rows
from chaos.service_faults import run_service_faults
from chaos.table import format_table


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="at least this many requests under load")
    parser.add_argument("--pause", type=float, default=20.0, help="seconds Redis and NATS stay frozen")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load between faults")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients")
    parser.add_argument("--provider-requests", type=int, default=10_000, help="requests of the provider-fault run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    run, _ = await run_service_faults(args.requests, args.pause, args.settle, args.workers)
    rows = run.rows() + await provider_fault_rows(args.provider_requests)
    print(f"\n{len(run.answers)} requests under service faults, {time.monotonic() - started:.0f} s in all\n")
    print(format_table(rows))
    for request_id in sorted(run.reconciliation.lost | run.reconciliation.doubled):
        print("not recorded exactly once:", run.answer(request_id))
    lost = sum(row.records_lost for row in rows)
    return 1 if lost or run.reconciliation.disagreements else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
