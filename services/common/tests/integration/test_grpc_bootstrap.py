"""The shared interceptors on a real gRPC server: auth, request id, errors, streams, health; where a
real service process listens."""

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import psutil
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from orqen.v1 import common_pb2, dispatch_pb2, dispatch_pb2_grpc
from orqen_common.context import Principal, account_scope, bind_request_id, principal_var, request_id_var
from orqen_common.db import unavailable
from orqen_common.errors import HTTP_STATUS_METADATA, OrqenError, from_rpc_error
from orqen_common.grpc_client import open_channel, open_channels
from orqen_common.grpc_server import ServerInterceptor, ServicerContext
from orqen_common.healthcheck import health_status
from orqen_stack.procs import free_port

TOKEN = "internal-test-token"
# What dispatch sends with a failure: the summary of every attempt, as bytes that are not text.
DETAIL = dispatch_pb2.DispatchSummary(provider="openai", upstream_status=500).SerializeToString() + b"\x00\xff"


class EchoDispatch(dispatch_pb2_grpc.DispatchServicer):
    """Reports what the interceptor established: request id, caller, scoped account."""

    async def Complete(
        self, request: dispatch_pb2.CompleteRequest, context: ServicerContext
    ) -> dispatch_pb2.CompleteResponse:
        if request.chat_json == b"fail":
            raise OrqenError.of(grpc.StatusCode.RESOURCE_EXHAUSTED, "upstream says slow down", http_status=429)
        if request.chat_json == b"fail with detail":
            raise OrqenError.of(grpc.StatusCode.UNAVAILABLE, "no model answered", http_status=502, detail=DETAIL)
        if request.chat_json == b"crash":
            raise RuntimeError("a bug")
        if request.chat_json == b"store restarting":
            raise asyncpg.CannotConnectNowError("the database system is shutting down")
        principal = principal_var.get()
        assert principal is not None
        scoped = account_scope(request.context.account_id)
        return dispatch_pb2.CompleteResponse(response_json=f"{request_id_var.get()}|{principal.kind}|{scoped}".encode())

    async def Stream(
        self, request: dispatch_pb2.CompleteRequest, context: ServicerContext
    ) -> AsyncIterator[dispatch_pb2.StreamEvent]:
        for i in range(3):
            yield dispatch_pb2.StreamEvent(chunks=[f"{request_id_var.get()}:{i}".encode()])
        if request.chat_json == b"fail with detail":
            raise OrqenError.of(grpc.StatusCode.UNAVAILABLE, "the stream broke", http_status=502, detail=DETAIL)


async def verify(key: str) -> Principal | None:
    return Principal(kind="api_key", account_id="acct-of-key") if key == "sk-orq-valid" else None


@pytest.fixture
async def server_addr() -> AsyncIterator[str]:
    server = grpc.aio.server(interceptors=[ServerInterceptor("test", TOKEN, verify, unavailable)])
    dispatch_pb2_grpc.add_DispatchServicer_to_server(EchoDispatch(), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


def _request(account: str, body: bytes = b"{}") -> dispatch_pb2.CompleteRequest:
    return dispatch_pb2.CompleteRequest(context=common_pb2.RequestContext(account_id=account), chat_json=body)


async def test_service_token_and_request_id_travel_in_metadata(server_addr: str) -> None:
    async with open_channel(server_addr, TOKEN) as channel:
        bind_request_id("req_from_edge")
        reply = await dispatch_pb2_grpc.DispatchStub(channel).Complete(_request("acct-1"))
    assert reply.response_json == b"req_from_edge|service|acct-1"


async def test_streams_carry_the_same_metadata(server_addr: str) -> None:
    # Regression: an interceptor class implementing both call types was only applied to unary calls.
    async with open_channel(server_addr, TOKEN) as channel:
        bind_request_id("req_stream")
        stub = dispatch_pb2_grpc.DispatchStub(channel)
        chunks = [data async for e in stub.Stream(_request("a")) for data in e.chunks]
    assert chunks == [b"req_stream:0", b"req_stream:1", b"req_stream:2"]


async def test_api_key_callers_are_confined_to_their_account(server_addr: str) -> None:
    async with open_channel(server_addr, "sk-orq-valid") as channel:
        stub = dispatch_pb2_grpc.DispatchStub(channel)
        assert (await stub.Complete(_request(""))).response_json.endswith(b"|api_key|acct-of-key")
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Complete(_request("someone-else"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("token", ["wrong-token", "sk-orq-unknown"])
async def test_unknown_credentials_are_refused(server_addr: str, token: str) -> None:
    async with open_channel(server_addr, token) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await dispatch_pb2_grpc.DispatchStub(channel).Complete(_request("a"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_orqen_errors_keep_their_http_status_and_bugs_stay_internal(server_addr: str) -> None:
    async with open_channel(server_addr, TOKEN) as channel:
        stub = dispatch_pb2_grpc.DispatchStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as limited:
            await stub.Complete(_request("a", b"fail"))
        with pytest.raises(grpc.aio.AioRpcError) as crashed:
            await stub.Complete(_request("a", b"crash"))
    assert dict(limited.value.trailing_metadata())[HTTP_STATUS_METADATA] == "429"
    assert from_rpc_error(limited.value, "dispatch").http_status == 429
    assert crashed.value.code() == grpc.StatusCode.INTERNAL
    assert "a bug" not in (crashed.value.details() or "")


async def test_a_store_that_is_down_is_unavailable_not_an_internal_error(server_addr: str) -> None:
    """Accounting with Postgres restarting: the edge answers 503 (and may use a cached verdict), never 500."""
    async with open_channel(server_addr, TOKEN) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await dispatch_pb2_grpc.DispatchStub(channel).Complete(_request("a", b"store restarting"))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert from_rpc_error(refused.value, "accounting").http_status == 503


async def test_health_needs_no_credentials(server_addr: str) -> None:
    async with grpc.aio.insecure_channel(server_addr) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())  # type: ignore[attr-defined]
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def other_local_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (none on an isolated machine)."""
    return [
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback
    ]


def ipv4(ip: str) -> str:
    """An IPv4 address as itself, also when a dual-stack socket shows it IPv4-mapped (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip)
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


def start_dispatch(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "orqen_dispatch"], env=env, stdout=out, stderr=out)


async def test_a_service_with_loopback_addresses_listens_on_loopback_only(
    orqen_redis_db_url: str, tmp_path: Path
) -> None:
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("ORQEN_GRPC_HOST", "ORQEN_METRICS_HOST")},
        "ORQEN_DISPATCH_ADDR": f"127.0.0.1:{grpc_port}",
        "ORQEN_ACCOUNTING_ADDR": f"127.0.0.1:{free_port()}",
        "ORQEN_METRICS_PORT": str(metrics_port),
        "ORQEN_REDIS_URL": orqen_redis_db_url,
        "ORQEN_INTERNAL_TOKEN": TOKEN,
        "ORQEN_LOG_LEVEL": "WARNING",
    }
    process = start_dispatch(env, tmp_path / "dispatch.log")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            for _ in range(300):
                if await health_status(channel) == "ok" or process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            assert await health_status(channel) == "ok", (tmp_path / "dispatch.log").read_text()
        listening = {
            (ipv4(c.laddr.ip), c.laddr.port)
            for c in psutil.Process(process.pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", grpc_port), ("127.0.0.1", metrics_port)}
        for address in other_local_addresses():
            for port in (grpc_port, metrics_port):
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection((address, port), timeout=5).close()
    finally:
        process.terminate()
        process.wait(30)


async def test_an_errors_detail_reaches_the_caller_from_a_call_and_from_a_stream_cut_short(server_addr: str) -> None:
    async with open_channel(server_addr, TOKEN) as channel:
        stub = dispatch_pb2_grpc.DispatchStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Complete(_request("a", b"fail with detail"))
        chunks = []
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async for event in stub.Stream(_request("a", b"fail with detail")):
                chunks += event.chunks
    for err in (failed.value, cut.value):
        translated = from_rpc_error(err, "dispatch")
        assert (translated.http_status, translated.detail) == (502, DETAIL)
    assert len(chunks) == 3
    assert from_rpc_error(failed.value, "dispatch").message == "no model answered"


async def test_channels_for_a_group_of_workers_connect_before_their_first_call(server_addr: str) -> None:
    channels = open_channels(server_addr, TOKEN, 3)
    try:
        for channel in channels:  # each its own connection, none of them called
            state = channel.get_state()
            while state is not grpc.ChannelConnectivity.READY:
                assert state is not grpc.ChannelConnectivity.TRANSIENT_FAILURE
                await asyncio.wait_for(channel.wait_for_state_change(state), 30)
                state = channel.get_state()
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
