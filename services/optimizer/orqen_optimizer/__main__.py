"""`python -m orqen_optimizer`: run the optimizer service, as a group of worker processes on its port."""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import AsyncExitStack
from functools import partial

import grpc
from redis import Redis

from orqen.v1 import accounting_pb2_grpc, optimizer_pb2, optimizer_pb2_grpc
from orqen_common import aio
from orqen_common.auth import open_key_verifier
from orqen_common.cache import TIMEOUT_SECONDS, open_redis
from orqen_common.changes import open_change_watch
from orqen_common.grpc_client import open_channel
from orqen_common.grpc_server import ServiceParts, run_grpc_service
from orqen_common.settings import load_settings
from orqen_common.worker_group import WorkerLink, available_cpus, run_worker_group
from orqen_optimizer.embeddings import ToolIndex, encoder
from orqen_optimizer.learned import LearnedUsage
from orqen_optimizer.plan import Planner
from orqen_optimizer.policy import RoutingPolicies, RoutingPolicy
from orqen_optimizer.servicer import OptimizerServicer
from orqen_optimizer.settings import OptimizerSettings
from orqen_optimizer.tokens import encoding
from orqen_optimizer.turns import ModelTurns


def warm_up(settings: OptimizerSettings) -> None:
    """Load the BPE tables and the embedding model before the service reports ready."""
    encoding()
    if settings.tool_routing:
        encoder(settings.model_cache_dir, int8=settings.embedding_precision == "int8")(["warm up"])


async def build(settings: OptimizerSettings, worker: WorkerLink, stack: AsyncExitStack) -> ServiceParts:
    await asyncio.to_thread(warm_up, settings)
    vectors = Redis.from_url(settings.redis_url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
    stack.callback(vectors.close)
    learned = None
    if settings.tool_learning:
        # Its own client: a short timeout, so a Redis in trouble delays a plan by that much at most.
        timeout = settings.learned_tools_timeout_ms / 1000
        usage = Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)
        stack.callback(usage.close)
        learned = LearnedUsage(usage, settings.learned_tools_max)
    planner = Planner(
        ToolIndex(vectors) if settings.tool_routing else None,
        max_new_tools=settings.routing_max_new_tools,
        max_indexed_per_request=settings.max_tool_texts_indexed_per_request,
        max_queued=settings.tool_indexing_queue,
        learned=learned,
    )
    stack.callback(planner.close)
    token = settings.internal_token.get_secret_value()
    redis = open_redis(stack, settings.redis_url)
    watch = open_change_watch(stack, redis)
    accounting_channel = open_channel(settings.accounting_addr, token)
    stack.push_async_callback(accounting_channel.close)
    policies = RoutingPolicies(
        accounting_pb2_grpc.AccountingStub(accounting_channel),
        redis,
        RoutingPolicy(ab_control_share=settings.ab_control_share),
        settings.account_config_ttl_seconds,
        watch=watch,
    )

    def register(server: grpc.aio.Server) -> None:
        servicer = OptimizerServicer(planner, policies, worker, ModelTurns(settings.optimizer_model_turns))
        optimizer_pb2_grpc.add_OptimizerServicer_to_server(servicer, server)

    return ServiceParts(
        register=register,
        service_names=[optimizer_pb2.DESCRIPTOR.services_by_name["Optimizer"].full_name],
        verify_api_key=open_key_verifier(stack, redis, settings, watch),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orqen_optimizer", description=__doc__)
    # Set by the group's parent for each worker it starts (orqen_common.worker_group).
    parser.add_argument("--worker", type=WorkerLink.parse, help=argparse.SUPPRESS)
    worker: WorkerLink | None = parser.parse_args(argv).worker
    settings = load_settings(OptimizerSettings)
    if worker is None:
        count = settings.optimizer_workers or available_cpus()
        return run_worker_group(
            "optimizer",
            settings,
            settings.optimizer_addr,
            count,
            lambda link: [sys.executable, "-m", "orqen_optimizer", "--worker", str(link)],
        )
    listen = settings.optimizer_addr
    aio.run(run_grpc_service("optimizer", settings, listen, partial(build, settings, worker), worker))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
