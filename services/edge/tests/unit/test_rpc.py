"""Downstream, the edge's one gRPC client, against an in-process accounting service."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
from pydantic import SecretStr

from fakes.serve import free_port
from orqen.v1 import accounting_pb2, accounting_pb2_grpc, common_pb2, optimizer_pb2, optimizer_pb2_grpc, usage_pb2
from orqen_common.context import bind_request_id
from orqen_common.errors import OrqenError
from orqen_edge.rpc import Downstream
from orqen_edge.settings import EdgeSettings

TOKEN = "internal-token"


@dataclass
class FakeAccounting(accounting_pb2_grpc.AccountingServicer):
    """Answers ListApiKeys and notes what each call carried; GetSession knows no session."""

    metadata: list[dict[str, str]] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)

    async def ListApiKeys(  # the RPC's name
        self,
        request: accounting_pb2.AccountRef,
        context: grpc.aio.ServicerContext[accounting_pb2.AccountRef, accounting_pb2.ListApiKeysResponse],
    ) -> accounting_pb2.ListApiKeysResponse:
        self.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        self.deadlines.append(context.time_remaining())
        return accounting_pb2.ListApiKeysResponse(keys=[accounting_pb2.ApiKeyInfo(id="k1", name=request.account_id)])

    async def GetSession(  # the RPC's name
        self,
        request: accounting_pb2.GetSessionRequest,
        context: grpc.aio.ServicerContext[accounting_pb2.GetSessionRequest, usage_pb2.Session],
    ) -> usage_pb2.Session:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"No session {request.session_id}.")
        raise AssertionError("abort raises")


@dataclass
class Served:
    downstream: Downstream
    accounting: FakeAccounting


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    accounting = FakeAccounting()
    server = grpc.aio.server()
    accounting_pb2_grpc.add_AccountingServicer_to_server(accounting, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    nowhere = f"127.0.0.1:{free_port()}"  # the other services: never called here
    downstream = Downstream(
        EdgeSettings(
            internal_token=SecretStr(TOKEN),
            accounting_addr=f"127.0.0.1:{port}",
            optimizer_addr=nowhere,
            dispatch_addr=nowhere,
            billing_addr=nowhere,
        )
    )
    try:
        yield Served(downstream, accounting)
    finally:
        await downstream.close()
        await server.stop(None)


async def test_each_call_carries_the_internal_token_the_request_id_and_a_deadline(served: Served) -> None:
    bind_request_id("req-123")
    keys = await served.downstream.list_api_keys("acct-1")
    assert [(k.id, k.name) for k in keys.keys] == [("k1", "acct-1")]
    (metadata,) = served.accounting.metadata
    assert metadata["authorization"] == f"Bearer {TOKEN}"
    assert metadata["x-request-id"] == "req-123"
    # Only that there is one: the time left when the call arrives depends on the machine's load.
    assert served.accounting.deadlines != [None]


async def test_a_refusal_leaves_as_the_error_tables_orqen_error(served: Served) -> None:
    with pytest.raises(OrqenError) as raised:
        await served.downstream.get_session("acct-1", "s-1")
    assert raised.value.http_status == 404
    assert raised.value.kind.openai_type == "not_found_error"
    assert raised.value.message == "No session s-1."


async def test_a_service_that_is_down_is_a_503_that_names_it(served: Served) -> None:
    with pytest.raises(OrqenError) as raised:
        await served.downstream.get_billing("acct-1")
    assert raised.value.http_status == 503
    assert raised.value.message == "The billing service is unavailable; try again shortly."


@dataclass
class PeerRecordingOptimizer(optimizer_pb2_grpc.OptimizerServicer):
    """Notes the connection (the caller's address and port) each plan came over, and answers as if the
    n-th connection reached worker `reaches[n]` of a group of `workers` (by default, one each)."""

    peers: list[str] = field(default_factory=list)
    reaches: list[int] | None = None
    workers: int = 0

    async def Plan(  # the RPC's name
        self,
        request: optimizer_pb2.PlanRequest,
        context: grpc.aio.ServicerContext[optimizer_pb2.PlanRequest, optimizer_pb2.PlanResponse],
    ) -> optimizer_pb2.PlanResponse:
        self.peers.append(context.peer())
        connection = list(dict.fromkeys(self.peers)).index(context.peer())
        worker = self.reaches[connection] if self.reaches else connection + 1
        return optimizer_pb2.PlanResponse(chat_json=request.chat_json, worker=worker, workers=self.workers)


@contextlib.asynccontextmanager
async def edge_to(optimizer: PeerRecordingOptimizer, channels: int) -> AsyncIterator[Downstream]:
    """The edge's client of an optimizer served by `optimizer`, over `channels` connections to start with."""
    server = grpc.aio.server()
    optimizer_pb2_grpc.add_OptimizerServicer_to_server(optimizer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    nowhere = f"127.0.0.1:{free_port()}"
    downstream = Downstream(
        EdgeSettings(
            internal_token=SecretStr(TOKEN),
            optimizer_addr=f"127.0.0.1:{port}",
            optimizer_channels=channels,
            accounting_addr=nowhere,
            dispatch_addr=nowhere,
            billing_addr=nowhere,
        )
    )
    try:
        yield downstream
    finally:
        await downstream.close()
        await server.stop(None)


async def test_plans_spread_over_several_connections() -> None:
    """The optimizer's worker processes share one port and each connection reaches one of them: plans
    spread over them only when they go out over several connections."""
    optimizer = PeerRecordingOptimizer()
    async with edge_to(optimizer, channels=4) as downstream:
        for _ in range(8):
            await downstream.plan(common_pb2.RequestContext(account_id="acct-1"), b"{}")
    assert len(set(optimizer.peers)) == 4
    assert sorted(optimizer.peers[:4]) == sorted(optimizer.peers[4:])  # each worker in turn


async def test_a_worker_that_no_connection_reached_gets_one_opened_for_it() -> None:
    """The kernel dealt the four connections to two of three workers: the edge opens more until one
    reaches the third, and no more than that."""
    optimizer = PeerRecordingOptimizer(reaches=[1, 2, 1, 2, 2, 3, 1], workers=3)
    async with edge_to(optimizer, channels=4) as downstream:
        for _ in range(12):
            await downstream.plan(common_pb2.RequestContext(account_id="acct-1"), b"{}")
    connections = list(dict.fromkeys(optimizer.peers))
    assert len(connections) == 6  # the fifth reached worker 2 again, the sixth worker 3
    third = [peer for peer in optimizer.peers if peer == connections[5]]
    assert len(third) == 3  # the plan that reached worker 3, then a third of the six after it
