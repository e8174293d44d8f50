"""The pieces of a worker group that need no process: how many workers, the link's wire form, the calls' balancer."""

import contextlib
import os
from pathlib import Path

import pytest

from orqen_common.grpc_client import Balancer
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


# Four connections as the kernel might deal them: three reach worker 1, one reaches worker 2.
REACHES = {"c0": 1, "c1": 1, "c2": 1, "c3": 2}


def call(balancer: Balancer[str]) -> str:
    """One call through the balancer, answered by the worker its channel reaches."""
    with balancer() as (channel, heard):
        heard(REACHES[channel])
    return channel


def test_calls_in_flight_spread_over_the_workers_not_over_their_connections() -> None:
    balancer = Balancer(list(REACHES))
    assert sorted(call(balancer) for _ in range(4)) == ["c0", "c1", "c2", "c3"]  # each heard from once
    with contextlib.ExitStack() as in_flight:
        held = [in_flight.enter_context(balancer())[0] for _ in range(4)]
    # Two calls on each worker: worker 2's one connection carries two, worker 1's three carry two.
    assert sorted(REACHES[c] for c in held) == [1, 1, 2, 2] and held.count("c3") == 2


def test_one_at_a_time_the_workers_take_turns() -> None:
    balancer = Balancer(list(REACHES))
    for _ in range(4):
        call(balancer)
    assert [REACHES[call(balancer)] for _ in range(6)] == [1, 2, 1, 2, 1, 2]


def test_a_connection_that_reaches_another_worker_is_counted_there() -> None:
    balancer = Balancer(["c0", "c1"])
    with balancer() as (_, heard):
        heard(1)
    with balancer() as (_, heard):
        heard(1)  # both connections reach worker 1
    with contextlib.ExitStack() as in_flight:
        held = [in_flight.enter_context(balancer()) for _ in range(2)]
        held[0][1](2)  # the first one's connection now reaches worker 2 (worker 1 restarted)
    # One call in flight per worker: each goes to its own connection.
    with contextlib.ExitStack() as in_flight:
        channels = {in_flight.enter_context(balancer())[0] for _ in range(2)}
    assert channels == {"c0", "c1"}
    with pytest.raises(ValueError):
        Balancer([])
