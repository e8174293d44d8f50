"""gRPC's environment-only settings: each service sets them before grpc loads, and the pinned grpc knows them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orqen_common import grpc_env

SERVICES = ["orqen_edge", "orqen_dispatch", "orqen_optimizer", "orqen_accounting", "orqen_billing"]


def _environment(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}, **extra}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_sets_them_before_anything_imports_grpc(service: str) -> None:
    code = f"import os, {service}.__main__; print(os.environ['GRPC_EXPERIMENTS'])"
    # -X importtime prints a line per module as its import ends, in order.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == grpc_env.EXPERIMENTS
    modules = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    first_grpc = next(i for i, name in enumerate(modules) if name == "grpc" or name.startswith("grpc."))
    assert modules.index("orqen_common.grpc_env") < first_grpc


def _grpc_complaints(experiments: str) -> str:
    code = "import grpc; grpc.insecure_channel('127.0.0.1:9').close()"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_environment(GRPC_EXPERIMENTS=experiments, GRPC_VERBOSITY="ERROR"),  # where gRPC logs the complaint
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr


def test_the_installed_grpc_knows_the_experiments_turned_off() -> None:
    # A gRPC release that drops the experiment logs this once and runs on its default: worth knowing at upgrade.
    assert "Unknown experiment" in _grpc_complaints("-no_such_experiment")
    assert "Unknown experiment" not in _grpc_complaints(grpc_env.EXPERIMENTS)


def test_an_operators_value_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_EXPERIMENTS", "-event_engine_listener")
    grpc_env.apply()
    assert os.environ["GRPC_EXPERIMENTS"] == "-event_engine_listener"
    monkeypatch.delenv("GRPC_EXPERIMENTS")
    grpc_env.apply()
    assert os.environ["GRPC_EXPERIMENTS"] == grpc_env.EXPERIMENTS
