"""Malformed chat bodies on the three SDK routes, through the running stack: wrong types, missing
fields, deep nesting, thousands of tools, invalid UTF-8, huge strings, one SDK's body on another's
route. Each is answered 4xx in the caller's SDK shape, and every service is still up afterwards."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts import new_account_key

ROUTES = {
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
    "bedrock": "/model/anthropic.claude-3-haiku-20240307-v1:0/converse",
}
VALID = {
    "openai": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    "anthropic": {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    "bedrock": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
}
# The fields each format requires, and for each field of a body values of a JSON type it never takes.
REQUIRED = {"openai": ("model", "messages"), "anthropic": ("model", "max_tokens", "messages"), "bedrock": ("messages",)}
_JSON_SCALARS = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "str": st.text(max_size=20),
}
_NOT = {
    "model": ("null", "bool", "int", "float"),
    "messages": ("null", "bool", "int", "float", "str"),
    "max_tokens": ("null", "bool", "float", "str"),
    "stream": ("int", "float", "str"),
    "temperature": ("bool", "str"),
    "tools": ("bool", "int", "float", "str"),
}
WRONG_TYPES = {
    "openai": ("model", "messages", "stream", "temperature", "tools"),
    "anthropic": ("model", "messages", "max_tokens", "stream", "temperature", "tools"),
    "bedrock": ("messages",),
}
# Message elements no format takes: scalars, nested lists, objects without a role.
BAD_MESSAGES = st.lists(
    st.one_of(
        st.integers(),
        st.text(max_size=10),
        st.none(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.sampled_from(["content", "text", "x"]), st.integers(), max_size=2),
    ),
    min_size=1,
    max_size=3,
)
# The body limit of the e2e stack (harness.stack_env: ORQEN_MAX_BODY_BYTES).
BODY_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
async def fuzz_client(stack: Any) -> AsyncIterator[httpx.Client]:
    key = await new_account_key(stack, "fuzz-chat")
    with httpx.Client(base_url=stack.info.edge_url, headers={"authorization": f"Bearer {key}"}, timeout=60) as client:
        yield client


def post(client: httpx.Client, ingress: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(ROUTES[ingress], content=content, headers={"content-type": "application/json"})


def assert_refused_in_sdk_shape(response: httpx.Response, ingress: str, status: int | None = None) -> None:
    """A 4xx whose body is the caller's SDK's error shape."""
    assert 400 <= response.status_code < 500 and (status is None or response.status_code == status), response.text
    body = response.json()
    if ingress == "openai":
        assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["type"], str), body
    elif ingress == "anthropic":
        assert body["type"] == "error" and isinstance(body["error"]["message"], str), body
    else:
        assert isinstance(body["message"], str) and response.headers["x-amzn-errortype"], body


@st.composite
def malformed(draw: st.DrawFn, ingress: str) -> dict[str, Any]:
    """A body of `ingress` with one required field gone, one field of a wrong type, or bad messages."""
    body = dict(VALID[ingress])
    how = draw(st.sampled_from(["missing", "wrong type", "bad messages"]))
    if how == "missing":
        del body[draw(st.sampled_from(REQUIRED[ingress]))]
    elif how == "wrong type":
        field = draw(st.sampled_from(WRONG_TYPES[ingress]))
        body[field] = draw(st.one_of(*(_JSON_SCALARS[kind] for kind in _NOT[field])))
    else:
        body["messages"] = draw(BAD_MESSAGES)
    return body


@pytest.mark.parametrize("ingress", list(ROUTES))
def test_generated_malformed_bodies_are_refused_in_the_sdk_shape(fuzz_client: httpx.Client, ingress: str) -> None:
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(body=malformed(ingress))
    def refused(body: dict[str, Any]) -> None:
        assert_refused_in_sdk_shape(post(fuzz_client, ingress, body), ingress)

    refused()


def _nested(depth: int) -> bytes:
    return b'{"model": "gpt-4o-mini", "messages": ' + b"[" * depth + b"]" * depth + b"}"


def _tools(count: int) -> list[dict[str, Any]]:
    # One malformed tool at the end of many good ones: the whole list is decoded before it is refused.
    good = [{"type": "function", "function": {"name": f"tool_{i}", "parameters": {}}} for i in range(count)]
    return [*good, {"type": "function", "function": {"name": 5}}]


HOSTILE = {
    "nested 10,000 deep": _nested(10_000),
    "2,000 tools, one malformed": {**VALID["openai"], "tools": _tools(2_000)},
    "invalid UTF-8": b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe\xc3"}]}',
    "a huge string of a wrong type": {**VALID["openai"], "temperature": "9" * 200_000},
    "a body over the limit": {**VALID["openai"], "user": "x" * (BODY_LIMIT + 1)},
    "not JSON": b"model=gpt-4o-mini&messages=hi",
    "a JSON array": [VALID["openai"]],
}


@pytest.mark.parametrize("ingress", list(ROUTES))
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_are_refused_in_the_sdk_shape(fuzz_client: httpx.Client, ingress: str, case: str) -> None:
    expected = 413 if case == "a body over the limit" else 400
    assert_refused_in_sdk_shape(post(fuzz_client, ingress, HOSTILE[case]), ingress, expected)


# Each SDK's body on another SDK's route, with what only the sender's format has.
CROSSED = {
    ("anthropic", "openai"): {
        "model": "gpt-4o-mini",
        "max_tokens": 16,
        "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "AAAA"}}]},
        ],
    },
    ("openai", "anthropic"): {
        "model": "claude-sonnet-4-6",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    },
    ("openai", "bedrock"): VALID["openai"],
    ("bedrock", "openai"): {"model": "gpt-4o-mini", **VALID["bedrock"], "inferenceConfig": {"maxTokens": "x"}},
    ("bedrock", "anthropic"): {"model": "claude-sonnet-4-6", "max_tokens": 16, **VALID["bedrock"]},
    ("anthropic", "bedrock"): VALID["anthropic"],
}


@pytest.mark.parametrize(("sender", "route"), list(CROSSED), ids=[f"{s}-body-on-{r}" for s, r in CROSSED])
def test_another_sdks_body_is_refused_in_the_routes_shape(fuzz_client: httpx.Client, sender: str, route: str) -> None:
    assert_refused_in_sdk_shape(post(fuzz_client, route, CROSSED[(sender, route)]), route, 400)


def test_every_service_is_still_up_afterwards(stack: Any, fuzz_client: httpx.Client) -> None:
    # The same processes as at the start (none crashed and was restarted), and all of them ready.
    assert all(psutil.pid_exists(pid) for pid in stack.pids.values()), stack.pids
    assert fuzz_client.get("/readyz").status_code == 200
    assert post(fuzz_client, "openai", VALID["openai"]).status_code == 200
