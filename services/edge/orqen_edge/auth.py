"""API-key authentication of HTTP callers, as a Litestar dependency."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency

from orqen_common.auth import bearer_token
from orqen_common.context import Principal, principal_var
from orqen_common.errors import unauthenticated
from orqen_edge.runtime import Runtime


async def api_key_principal(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Principal:
    """The account behind `Authorization: Bearer sk-orq-…` (or Anthropic's `x-api-key`)."""
    token = bearer_token(request.headers.get("authorization")) or request.headers.get("x-api-key")
    if not token:
        raise unauthenticated("Missing API key: send 'Authorization: Bearer sk-orq-…'.")
    principal = await runtime.authenticate(token)
    if principal is None:
        raise unauthenticated("Invalid API key.")
    principal_var.set(principal)
    return principal
