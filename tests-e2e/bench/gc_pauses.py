"""The full garbage collections each service made during a run (`make bench ARGS=--gc`), from bench/gc_probe."""

from __future__ import annotations

import os
from pathlib import Path

from process_usage import process_tree

PROBE = Path(__file__).with_name("gc_probe")


def probe_env(env: dict[str, str], directory: Path) -> None:
    """Make every process started with `env` log its full collections into `directory`."""
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROBE), env.get("PYTHONPATH", "")) if p)
    env["BENCH_GC_DIR"] = str(directory)


class FullCollections:
    """The full collections of each service (its worker processes included) from now on."""

    def __init__(self, directory: Path, pids: dict[str, int]) -> None:
        self._directory = directory
        self._trees = {name: process_tree(pid) for name, pid in pids.items()}
        self._seen = {pid: len(self._pauses(pid)) for tree in self._trees.values() for pid in tree}

    def since(self) -> dict[str, list[float]]:
        """Each service's full collections since this was made: their wall times in milliseconds."""
        return {
            name: [ms for pid in tree for ms in self._pauses(pid)[self._seen.get(pid, 0) :]]
            for name, tree in self._trees.items()
        }

    def _pauses(self, pid: int) -> list[float]:
        log = self._directory / str(pid)
        return [float(line) for line in log.read_text().split()] if log.exists() else []


def summary(pauses: dict[str, list[float]]) -> str:
    """`  full gc edge 2 (max 12 ms) …`, the services that made any."""
    made = {name: ms for name, ms in pauses.items() if ms}
    if not made:
        return "  full gc none"
    return "  full gc " + " ".join(f"{name} {len(ms)} (max {max(ms):.0f} ms)" for name, ms in made.items())
