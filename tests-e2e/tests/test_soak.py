"""The soak of `make soak`, for one minute: memory, descriptors, errors and records hold under steady load.

Latency is printed, never asserted on (the machine is shared); the full 30-minute run's numbers are
in the README.
"""

from __future__ import annotations

import os
from typing import Any

from chaos.soak import soak_and_count

from accounts import new_account_key


async def test_a_minute_of_steady_load_through_every_ingress_leaks_nothing(stack: Any) -> None:
    key = await new_account_key(stack, f"soak-{os.getpid()}")
    report = await soak_and_count(stack.info.edge_url, key, stack.pids, seconds=60, rate=5, warmup=20, slices=4)
    print(report.render())
    assert report.requests >= 250 and report.errors == 0, report.render()
    assert report.records_lost == 0 and report.recorded == {"accounting": report.answered, "billing": report.answered}
    assert {s.name for s in report.services} == {"edge", "optimizer", "dispatch", "accounting", "billing"}
    for service in report.services:
        assert service.memory_growth <= 0.10, report.render()
        assert not service.fds_grew, report.render()
