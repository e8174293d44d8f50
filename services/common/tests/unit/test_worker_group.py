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
    link = WorkerLink(index=3, count=4, group_id=5, ready_fd=7, group_fd=9)
    assert str(link) == "3:4:5:7:9" and WorkerLink.parse(str(link)) == link
    with pytest.raises(ValueError):
        WorkerLink.parse("3:7:9")


# Four connections as the kernel might deal them: three reach worker 1, one reaches worker 2.
REACHES = {"c0": 1, "c1": 1, "c2": 1, "c3": 2}


def call(balancer: Balancer[str], reaches: dict[str, int] = REACHES, workers: int = 2) -> str:
    """One call through the balancer, answered by the worker its channel reaches: workers 1 to `workers`
    are group 100, the next ones group 200, of as many."""
    with balancer() as (channel, heard):
        worker = reaches[channel]
        heard(worker, 100 if worker <= workers else 200, workers)
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
        heard(1, 100, 1)
    with balancer() as (_, heard):
        heard(1, 100, 1)  # both connections reach worker 1
    with contextlib.ExitStack() as in_flight:
        held = [in_flight.enter_context(balancer()) for _ in range(2)]
        held[0][1](2, 200, 1)  # the first one's connection now reaches worker 2 (its group restarted)
    # One call in flight per worker: each goes to its own connection.
    with contextlib.ExitStack() as in_flight:
        channels = {in_flight.enter_context(balancer())[0] for _ in range(2)}
    assert channels == {"c0", "c1"}
    with pytest.raises(ValueError):
        Balancer([])


def test_channels_are_opened_until_every_worker_is_reached_and_no_further() -> None:
    reaches = {"c0": 1, "c1": 1, "c2": 2, "c3": 2, "c4": 3}
    opened: list[str] = []

    def more() -> str:
        opened.append(f"c{2 + len(opened)}")
        return opened[-1]

    balancer = Balancer(["c0", "c1"], more=more, most=6)
    call(balancer, reaches, workers=3)
    assert opened == []  # c1 has not answered yet: it may reach another worker
    call(balancer, reaches, workers=3)
    assert opened == ["c2"]  # both reach worker 1 of 3
    call(balancer, reaches, workers=3)
    assert opened == ["c2", "c3"]  # c2 reached worker 2
    used = [call(balancer, reaches, workers=3) for _ in range(8)]
    assert opened == ["c2", "c3", "c4"] and balancer.items == ["c0", "c1", "c2", "c3", "c4"]
    assert sorted(reaches[c] for c in used[1:7]) == [1, 1, 2, 2, 3, 3]  # the third worker takes its turns


def test_no_more_channels_than_the_most_allowed() -> None:
    opened: list[str] = []

    def more() -> str:
        opened.append(f"c{1 + len(opened)}")
        return opened[-1]

    balancer = Balancer(["c0"], more=more, most=3)
    for _ in range(10):
        call(balancer, dict.fromkeys(["c0", "c1", "c2", "c3"], 1), workers=2)  # every connection reaches worker 1
    assert balancer.items == ["c0", "c1", "c2"]


def test_an_optimizer_that_does_not_give_its_group_size_gets_no_more_channels() -> None:
    balancer = Balancer(["c0"], more=lambda: "c1", most=4)
    for _ in range(3):
        call(balancer, {"c0": 1}, workers=0)  # an optimizer from before `workers` answers 0
    assert balancer.items == ["c0"]


def test_workers_of_every_group_heard_from_are_sought() -> None:
    """Two replicas of two workers each: the first answers reach workers 1 and 3, one of each group."""
    reaches = {"c0": 1, "c1": 3, "c2": 3, "c3": 2, "c4": 1, "c5": 4}
    opened: list[str] = []

    def more() -> str:
        opened.append(f"c{2 + len(opened)}")
        return opened[-1]

    balancer = Balancer(["c0", "c1"], more=more, most=8)
    for _ in range(12):
        call(balancer, reaches, workers=2)
    assert opened == ["c2", "c3", "c4", "c5"]  # until workers 2 and 4 answered too
