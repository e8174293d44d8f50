"""What one optimizer worker pays to start: start-up time and resident memory.

Each run is a fresh Python process (as a worker is) that imports what a worker imports, loads
what its warm-up loads (BPE tables, the embedding model) and embeds one query, then prints the
seconds that took, its resident memory, and whether torch was imported. Run it with another
checkout's interpreter to measure that checkout (the child imports its orqen_optimizer).
    .venv/bin/python services/optimizer/bench/encoder_start.py [--runs 3] [--precision int8|float32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_CHILD = """
import json, sys, time
started = time.perf_counter()
import orqen_optimizer.__main__  # everything a worker imports (gRPC, FAISS, Redis, the planner)
from orqen_optimizer.embeddings import encoder
from orqen_optimizer.tokens import encoding
encoding()
encoder(int8=sys.argv[1] == "int8")(["what's the weather in Oslo"])
seconds = time.perf_counter() - started
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(json.dumps({
    "seconds": seconds,
    "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
    "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,
    "torch_imported": "torch" in sys.modules,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--precision", choices=("int8", "float32"), default="int8", help="the graph the worker runs")
    args = parser.parse_args()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'run':>4} {'start-up s':>11} {'RSS MB':>8} {'peak RSS MB':>12} {'torch imported':>15}")
    for run in range(1, args.runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, args.precision], env=env, check=True, capture_output=True, text=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        row = f"{run:>4} {r['seconds']:>11.2f} {r['rss_mb']:>8.0f} {r['peak_rss_mb']:>12.0f}"
        print(f"{row} {r['torch_imported']!s:>15}")


if __name__ == "__main__":
    main()
