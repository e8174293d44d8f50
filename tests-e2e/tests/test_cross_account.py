"""Account B tries account A's ids everywhere: every account route of the OpenAPI document, every
dashboard page the edge serves, every gRPC method of accounting, billing and dispatch.

The routes, pages and methods are enumerated (from /schema/openapi.json, the edge app's routes
and the proto descriptors), so new ones are swept without touching this file. An id in a path
must answer 404 or 403; every answer, whatever its status, must hold none of A's data; and
afterwards everything of A's is still there and still works.
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message

from accounts import logged, remember_secret
from orqen.v1 import accounting_pb2, accounting_pb2_grpc, billing_pb2, dispatch_pb2
from orqen_common.grpc_client import open_channel

# An id kind by the words its parameter or field name contains, most specific first.
_ID_KINDS = (
    ("request", "request_id"),
    ("trace", "request_id"),
    ("session", "session_id"),
    ("credential", "credential_id"),
    ("provider", "credential_id"),
    ("owner", "owner_id"),
    ("key", "api_key_id"),
    ("account", "account_id"),
)
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
_MUTATING = {"post", "put", "patch", "delete"}


@dataclass(frozen=True)
class AccountA:
    """Everything of A's that B will try to reach, and what in an answer would be A's data."""

    account_id: str
    api_key: str
    api_key_id: str
    request_id: str
    session_id: str
    credential_id: str
    owner_id: str
    owner_email: str
    # A phrase only A's request carries: it would surface in a log entry, a session or a trace.
    phrase: str

    def ids(self) -> dict[str, str]:
        return {
            kind: getattr(self, kind)
            for kind in ("account_id", "api_key_id", "request_id", "session_id", "credential_id", "owner_id")
        }

    def leaked(self, answer: str, sent: str) -> list[str]:
        """What of A's is in `answer` that the caller did not send itself (an id echoed in a 404 is not a leak)."""
        data = {**self.ids(), "owner_email": self.owner_email, "phrase": self.phrase, "api_key": self.api_key}
        return [name for name, value in data.items() if value in answer and value not in sent]


def id_kind(name: str) -> str | None:
    lowered = name.lower()
    return next((kind for word, kind in _ID_KINDS if word in lowered), None)


@dataclass
class AccountB:
    key: str
    session: httpx.AsyncClient
    csrf: dict[str, str]


async def _internal_call(stack: Any, method: str, request: Message) -> Any:
    env = stack.service_env
    async with open_channel(env["ORQEN_ACCOUNTING_ADDR"], env["ORQEN_INTERNAL_TOKEN"]) as channel:
        return await getattr(accounting_pb2_grpc.AccountingStub(channel), method)(request, timeout=10)


async def _account_with_owner(stack: Any, name: str) -> tuple[str, str, accounting_pb2.Owner, str]:
    """A new account: (its id, a key, an owner, the owner's password)."""
    account = await _internal_call(stack, "EnsureAccount", accounting_pb2.EnsureAccountRequest(name=name))
    created = await _internal_call(
        stack, "CreateApiKey", accounting_pb2.CreateApiKeyRequest(account_id=account.id, name="sweep")
    )
    password = remember_secret("owner password", f"sweep password {uuid.uuid4()}")
    owner = await _internal_call(
        stack,
        "CreateOwner",
        accounting_pb2.CreateOwnerRequest(account_id=account.id, email=f"{name}@example.com", password=password),
    )
    return account.id, remember_secret("API key", created.plaintext), owner, password


@pytest.fixture(scope="module")
async def account_a(stack: Any) -> AccountA:
    name = f"sweep-a-{uuid.uuid4().hex[:8]}"
    account_id, key, owner, _ = await _account_with_owner(stack, name)
    phrase = f"only-in-account-a-{uuid.uuid4().hex}"
    session_id = f"sweep-a-session-{uuid.uuid4().hex[:8]}"
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    async with httpx.AsyncClient(
        base_url=stack.info.edge_url, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as a:
        chat = await a.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": phrase}], "tools": tools},
            headers={"x-orqen-session-id": session_id},
        )
        assert chat.status_code == 200, chat.text
        request_id = chat.headers["x-request-id"]
        await logged(a, request_id)
        second = (await a.post("/v1/account/keys", json={"name": "second"})).json()
        remember_secret("API key", second["key"])
        credential = await a.post(
            "/v1/account/providers",
            json={"provider": "groq", "api_key": remember_secret("saved provider key", f"gsk-a-{uuid.uuid4().hex}")},
        )
        assert credential.status_code == 200, credential.text
    return AccountA(
        account_id=account_id,
        api_key=key,
        api_key_id=second["id"],
        request_id=request_id,
        session_id=session_id,
        credential_id=credential.json()["id"],
        owner_id=owner.id,
        owner_email=owner.email,
        phrase=phrase,
    )


@pytest.fixture(scope="module")
async def account_b(stack: Any) -> AsyncIterator[AccountB]:
    name = f"sweep-b-{uuid.uuid4().hex[:8]}"
    _, key, owner, password = await _account_with_owner(stack, name)
    # The dashboard session cookie is Secure: log in over HTTPS, trusting the dev certificate.
    trusting = ssl.create_default_context(cafile=str(stack.info.cert_path))
    async with httpx.AsyncClient(base_url=stack.info.tls_url, verify=trusting, timeout=30) as browser:
        login = await browser.post("/v1/dashboard/login", json={"email": owner.email, "password": password})
        assert login.status_code == 200, login.text
        yield AccountB(key, browser, {"x-csrf-token": login.json()["csrf_token"]})


# --- HTTP: the account routes and the dashboard pages ----------------------------------------------------------------


def _is_account_route(path: str, operation: dict[str, Any]) -> bool:
    """Routes that act on an account's own records: those a dashboard session may call, and /v1/account/*.

    Logging out is left out: it would end B's session halfway through the sweep.
    """
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    return ("dashboardSession" in schemes or path.startswith("/v1/account")) and not path.endswith("/logout")


Caller = tuple[httpx.AsyncClient, dict[str, str]]


def _callers(operation: dict[str, Any], by_key: Caller, by_session: Caller) -> list[Caller]:
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    return [caller for scheme, caller in (("apiKey", by_key), ("dashboardSession", by_session)) if scheme in schemes]


def _fillings(path: str, a: AccountA) -> Iterator[str]:
    """`path` with A's ids in its parameters: the id its name asks for, or each of A's ids when it names none."""
    names = _PATH_PARAM.findall(path)
    if not names:
        yield path
        return
    choices = [[a.ids()[kind]] if (kind := id_kind(name)) else list(a.ids().values()) for name in names]
    filled = [path]
    for name, values in zip(names, choices, strict=True):
        pattern = re.compile(r"\{" + name + r"(?::\w+)?\}")
        filled = [pattern.sub(value, f, count=1) for f in filled for value in values]
    yield from filled


def _names_an_id(template: str) -> bool:
    """Whether a path parameter names an id (a sign-up link's token, say, is no id of A's: it may answer 200)."""
    return any(id_kind(name) or name.endswith("id") for name in _PATH_PARAM.findall(template))


def _id_query(parameters: list[dict[str, Any]], a: AccountA) -> dict[str, str]:
    return {p["name"]: a.ids()[kind] for p in parameters if p.get("in") == "query" and (kind := id_kind(p["name"]))}


async def _problems(
    client: httpx.AsyncClient,
    method: str,
    template: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    a: AccountA,
) -> list[str]:
    """What is wrong with B's call: a 5xx, an id of A's in the path answered other than 404 or 403, A's data."""
    body = {} if method.lower() in _MUTATING else None
    answer = await client.request(method.upper(), path, params=query, json=body, headers=headers)
    call = f"{method.upper()} {path} {query or ''}".rstrip()
    problems = []
    if answer.status_code >= 500:
        problems.append(f"{call}: {answer.status_code}")
    if _names_an_id(template) and answer.status_code not in (403, 404):
        problems.append(f"{call}: {answer.status_code} for another account's id")
    if leaked := a.leaked(answer.text, path + repr(query)):
        problems.append(f"{call}: {answer.status_code} with A's {', '.join(leaked)}")
    return problems


async def test_every_account_route_refuses_another_accounts_ids(
    stack: Any, account_a: AccountA, account_b: AccountB
) -> None:
    async with httpx.AsyncClient(base_url=stack.info.edge_url, timeout=30) as anonymous:
        document = (await anonymous.get("/schema/openapi.json")).json()
    by_key = {"authorization": f"Bearer {account_b.key}"}
    problems: list[str] = []
    swept = 0
    async with httpx.AsyncClient(base_url=stack.info.edge_url, timeout=30) as script:
        for template, operations in document["paths"].items():
            for method, operation in operations.items():
                if method not in {"get", *_MUTATING} or not _is_account_route(template, operation):
                    continue
                query = _id_query(operation.get("parameters", []), account_a)
                for path in _fillings(template, account_a):
                    swept += 1
                    # B with its API key, and B in its dashboard session (CSRF token included), as
                    # the operation's security allows.
                    for client, headers in _callers(operation, (script, by_key), (account_b.session, account_b.csrf)):
                        problems += await _problems(client, method, template, path, query, headers, account_a)
    assert swept >= 20, "the OpenAPI document lists fewer account routes than the account API has"
    assert not problems, "\n".join(problems)
    await _a_is_untouched(stack, account_a)


async def _dashboard_routes(stack: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the edge app serves under /dashboard, but logging out (it would end
    B's session halfway through the sweep)."""
    from orqen_common.settings import load_settings
    from orqen_edge.app import create_app
    from orqen_edge.runtime import Runtime
    from orqen_edge.settings import EdgeSettings

    with pytest.MonkeyPatch.context() as env:
        for name, value in stack.service_env.items():
            env.setenv(name, value)
        settings = load_settings(EdgeSettings)
    async with AsyncExitStack() as resources:
        app = create_app(await Runtime.open(settings, resources))
        return sorted(
            (method, route.path)
            for route in app.routes
            if route.path.startswith("/dashboard") and not route.path.endswith("/logout")
            for method in getattr(route, "methods", {"GET"})
            if method in {"GET", "POST", "PUT", "PATCH", "DELETE"}
        )


async def test_every_dashboard_page_refuses_another_accounts_ids(
    stack: Any, account_a: AccountA, account_b: AccountB
) -> None:
    routes = await _dashboard_routes(stack)
    if not routes:
        pytest.skip("the edge serves no dashboard pages yet")
    problems: list[str] = []
    for method, template in routes:
        # Pages filter by query parameters the app's routes do not list: offer A's ids under every id name.
        query = {kind: value for kind, value in account_a.ids().items() if kind != "account_id"}
        for path in _fillings(template, account_a):
            problems += await _problems(account_b.session, method, template, path, query, account_b.csrf, account_a)
    assert not problems, "\n".join(problems)
    await _a_is_untouched(stack, account_a)


# --- gRPC: every method of accounting, billing and dispatch ---------------------------------------------------------

_SERVICES = (
    (accounting_pb2, "Accounting", "ORQEN_ACCOUNTING_ADDR"),
    (billing_pb2, "Billing", "ORQEN_BILLING_ADDR"),
    (dispatch_pb2, "Dispatch", "ORQEN_DISPATCH_ADDR"),
)


# What a JSON bytes field gets (dispatch's chat_json): a valid chat, so the call gets past parsing to whose it is.
_CHAT_JSON = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}'


def _with_a_ids(message: Message, a: AccountA, depth: int = 3) -> Message:
    """`message` with every string field that names an id set to A's, `depth` levels of nested messages deep."""
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        if field.type == descriptor.FieldDescriptor.TYPE_STRING and (kind := id_kind(field.name)):
            setattr(message, field.name, a.ids()[kind])
        elif field.type == descriptor.FieldDescriptor.TYPE_BYTES and field.name.endswith("_json"):
            setattr(message, field.name, _CHAT_JSON)
        elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE and depth > 1:
            _with_a_ids(getattr(message, field.name), a, depth - 1)
    return message


async def _call(channel: grpc.aio.Channel, service: str, method: descriptor.MethodDescriptor, request: Message) -> Any:
    """Call `method` generically, unary or streaming on either side; a stream's answers are collected."""
    name = f"/orqen.v1.{service}/{method.name}"
    codec = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": message_factory.GetMessageClass(method.output_type).FromString,
    }
    if method.client_streaming:
        return [reply async for reply in channel.stream_stream(name, **codec)(iter([request]), timeout=15)]
    if method.server_streaming:
        return [reply async for reply in channel.unary_stream(name, **codec)(request, timeout=15)]
    return await channel.unary_unary(name, **codec)(request, timeout=15)


async def test_every_grpc_method_refuses_another_accounts_ids(
    stack: Any, account_a: AccountA, account_b: AccountB
) -> None:
    problems: list[str] = []
    swept = 0
    for module, service, address in _SERVICES:
        async with open_channel(stack.service_env[address], account_b.key) as channel:
            for method in module.DESCRIPTOR.services_by_name[service].methods:
                request = message_factory.GetMessageClass(method.input_type)()
                if method.client_streaming:
                    # The first frame of a stream says whose it is (Proxy's head).
                    request = _first_frame(request)
                _with_a_ids(request, account_a)
                swept += 1
                try:
                    answer = await _call(channel, service, method, request)
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED):
                        problems.append(f"{service}.{method.name}: {err.code().name} {err.details()}")
                    elif leaked := account_a.leaked(err.details() or "", str(request)):
                        problems.append(f"{service}.{method.name}: A's {', '.join(leaked)} in the error")
                    continue
                problems.append(f"{service}.{method.name}: answered for A's ids: {str(answer)[:200]}")
    assert swept >= 30
    assert not problems, "\n".join(problems)
    await _a_is_untouched(stack, account_a)


def _first_frame(frame: Message) -> Message:
    """A stream's opening frame: its first message-typed oneof member (Proxy's ProxyHead), set."""
    head = next(f for f in frame.DESCRIPTOR.fields if f.type == descriptor.FieldDescriptor.TYPE_MESSAGE)
    getattr(frame, head.name).SetInParent()
    nested = getattr(frame, head.name)
    for inner in nested.DESCRIPTOR.fields:
        if inner.type == descriptor.FieldDescriptor.TYPE_MESSAGE and not inner.is_repeated:
            getattr(nested, inner.name).SetInParent()
    return frame


async def _a_is_untouched(stack: Any, a: AccountA) -> None:
    """Nothing B tried changed A's records: the key works, and the key, credential and request are all there."""
    async with httpx.AsyncClient(
        base_url=stack.info.edge_url, headers={"authorization": f"Bearer {a.api_key}"}, timeout=30
    ) as client:
        keys = {k["id"]: k for k in (await client.get("/v1/account/keys")).json()["data"]}
        assert keys[a.api_key_id]["revoked_at"] is None
        assert a.credential_id in {c["id"] for c in (await client.get("/v1/account/providers")).json()["data"]}
        assert (await client.get(f"/v1/account/requests/{a.request_id}")).status_code == 200
        assert (await client.get(f"/v1/account/sessions/{a.session_id}/requests")).status_code == 200
