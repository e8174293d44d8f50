"""Service faults under load, bounded: the same run as `make chaos` (tests-e2e/chaos/run.py), smaller.

Every service is killed in turn under load over the three ingresses, Redis and NATS are frozen
for a few seconds and Postgres is restarted, on a stack with embedded servers of its own.
"""

from __future__ import annotations

import pytest
from chaos.faults import SERVICES
from chaos.service_faults import ChaosRun, describe, run_service_faults
from chaos.table import format_table


@pytest.fixture(scope="module")
async def chaos() -> ChaosRun:
    run, _ = await run_service_faults(requests=300, pause_seconds=3.0, settle_seconds=2.0, workers=6)
    print(format_table(run.rows()))
    for request_id in sorted(run.reconciliation.lost | run.reconciliation.doubled):
        print("not recorded exactly once:", run.answer(request_id))
    return run


def test_every_request_answered_200_is_recorded_exactly_once(chaos: ChaosRun) -> None:
    rec = chaos.reconciliation
    assert sum(a.ok for a in chaos.answers) > 0
    assert not rec.lost, f"answered 200 but not in the request log: {sorted(rec.lost)[:10]}"
    assert not rec.doubled, f"in the request log more than once: {sorted(rec.doubled)[:10]}"


def test_rollups_sessions_and_billing_agree_with_the_request_log(chaos: ChaosRun) -> None:
    assert not chaos.reconciliation.disagreements


def test_no_500_and_no_hang_and_every_error_in_the_sdk_shape(chaos: ChaosRun) -> None:
    for fault in chaos.faults:
        window = chaos.window(fault)
        summary = f"{fault.name}: {describe(window)}"
        assert not [a for a in window if a.status >= 500 and a.status != 503], summary
        assert all(a.sdk_shape for a in window if a.status not in (0, 200)), summary
        if fault.target != "edge":  # only a killed edge leaves clients without an answer or with a cut stream
            silent = [a for a in window if a.status == 0 or (a.status == 200 and not a.complete and not a.stream_error)]
            assert not silent, summary


def test_each_killed_service_is_restarted_with_backoff_and_the_log_says_so(chaos: ChaosRun) -> None:
    for fault in chaos.faults:
        if fault.target in SERVICES:
            said = " ".join(fault.supervisor_said)
            assert f"{fault.target} exited with code -9; restarting in" in said, fault.supervisor_said
            assert f"started {fault.target}" in said


def test_while_dispatch_is_down_chat_gets_503_in_the_sdk_shape_of_each_ingress(chaos: ChaosRun) -> None:
    dispatch = next(f for f in chaos.faults if f.target == "dispatch")
    refused = [a for a in chaos.window(dispatch) if a.status == 503]
    assert refused, describe(chaos.window(dispatch))
    assert all(a.sdk_shape for a in refused)


def test_chat_keeps_working_through_faults_of_what_it_does_not_need(chaos: ChaosRun) -> None:
    """Killing the optimizer, accounting or billing, freezing NATS or restarting Postgres fails no chat."""
    for fault in chaos.faults:
        if fault.target in ("optimizer", "accounting", "billing", "nats", "postgres"):
            window = chaos.window(fault)
            assert window and all(a.ok for a in window), f"{fault.name}: {describe(window)}"
