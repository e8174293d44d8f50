"""The pieces of a worker group that need no process: how many workers, the link's wire form, calls in turn."""

import os
from pathlib import Path

import pytest

from orqen_common.grpc_client import RoundRobin
from orqen_common.worker_group import WorkerLink, available_cpus


def test_cpus_are_the_affinity_mask_capped_by_a_containers_cpu_limit(tmp_path: Path) -> None:
    mask = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert available_cpus(tmp_path / "missing") == mask  # no cgroup v2
    cpu_max.write_text("max 100000\n")  # no limit
    assert available_cpus(cpu_max) == mask
    cpu_max.write_text("50000 100000\n")  # half a CPU still runs one worker
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{(mask + 8) * 100000} 100000\n")  # a limit above the mask: the mask
    assert available_cpus(cpu_max) == mask
    if mask > 1:
        cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: two workers
        assert available_cpus(cpu_max) == 2


def test_a_worker_link_travels_as_one_argument() -> None:
    link = WorkerLink(index=3, ready_fd=7, group_fd=9)
    assert str(link) == "3:7:9" and WorkerLink.parse(str(link)) == link
    with pytest.raises(ValueError):
        WorkerLink.parse("3:7")


def test_round_robin_takes_each_item_in_turn() -> None:
    turns = RoundRobin(["a", "b", "c"])
    assert [turns() for _ in range(7)] == ["a", "b", "c", "a", "b", "c", "a"]
    with pytest.raises(ValueError):
        RoundRobin([])
