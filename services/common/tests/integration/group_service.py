"""A gRPC service with nothing but health, run as a worker group for test_worker_group.py.

    python group_service.py                 # the group's parent: GROUP_TEST_WORKERS workers
    python group_service.py --worker LINK   # one worker (the parent starts them)

Each worker writes `built-<index>` into GROUP_TEST_DIR once it has built its parts; worker 1
first waits for a file `release` there (a model that takes long to load).
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

from orqen_common.context import Principal
from orqen_common.grpc_server import ServiceParts, run_grpc_service
from orqen_common.settings import OptimizerAddress, ServiceSettings, load_settings
from orqen_common.worker_group import WorkerLink, run_worker_group


class GroupSettings(ServiceSettings, OptimizerAddress):
    """The settings of a service listening on ORQEN_OPTIMIZER_ADDR's port."""


async def no_api_keys(key: str) -> Principal | None:
    return None


async def build(worker: WorkerLink, stack: AsyncExitStack) -> ServiceParts:
    directory = Path(os.environ["GROUP_TEST_DIR"])
    while worker.index == 1 and not (directory / "release").exists():  # noqa: ASYNC110 (the test creates it)
        await asyncio.sleep(0.05)
    (directory / f"built-{worker.index}").touch()
    return ServiceParts(register=lambda server: None, service_names=[], verify_api_key=no_api_keys)


def main(argv: list[str]) -> int:
    settings = load_settings(GroupSettings)
    if argv[:1] == ["--worker"]:
        link = WorkerLink.parse(argv[1])
        asyncio.run(run_grpc_service("group-test", settings, settings.optimizer_addr, partial(build, link), link))
        return 0
    count = int(os.environ["GROUP_TEST_WORKERS"])
    return run_worker_group(
        "group-test",
        settings,
        settings.optimizer_addr,
        count,
        lambda link: [sys.executable, __file__, "--worker", str(link)],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
