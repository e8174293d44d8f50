"""A service's resident memory, open file descriptors and CPU time, its worker processes included.

`make soak` samples them every second, `make bench-memory` before and after its requests, and
`make bench ARGS=--cpu` reads the CPU time around each run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (a service's workers count as the service)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The parent id is the 2nd field after the command, which is in parentheses.
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def resident_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def open_fds(pids: list[int]) -> int:
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the service has used so far, its worker processes included."""
    total = 0
    for member in process_tree(pid):
        with open(f"/proc/{member}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One service at one moment, seconds into the run."""

    at: float
    rss: int
    fds: int


def sample(pid: int, at: float) -> Usage:
    """The service's usage now; a service that is gone (crashed, restarted) raises ProcessLookupError."""
    try:
        tree = process_tree(pid)
        return Usage(at, resident_bytes(tree), open_fds(tree))
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
