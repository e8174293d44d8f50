"""Per-request context carried in ContextVars: the request id and the authenticated caller."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass

import grpc
import structlog

from orqen_common.errors import OrqenError

REQUEST_ID_HEADER = "x-request-id"

request_id_var: ContextVar[str] = ContextVar("request_id", default="")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: another Orqen service, or an account through an API key or a dashboard session."""

    kind: str  # "service", "api_key", or "session" (a dashboard login, at the edge)
    account_id: str = ""
    api_key_id: str = ""
    account_name: str = ""

    @property
    def is_service(self) -> bool:
        return self.kind == "service"


SERVICE_PRINCIPAL = Principal(kind="service")

principal_var: ContextVar[Principal | None] = ContextVar("principal", default=None)


def new_request_id() -> str:
    """A fresh request id: a UUID4 without dashes, prefixed so it is recognisable in logs."""
    return f"req_{uuid.uuid4().hex}"


def bind_request_id(request_id: str) -> None:
    """Make `request_id` current for this task: logs and outgoing gRPC calls carry it."""
    request_id_var.set(request_id)
    structlog.contextvars.bind_contextvars(request_id=request_id)


def account_scope(requested: str) -> str:
    """The account a call may act on.

    Services may act for any account they name; an API-key caller only for its own,
    whatever it asks for, so one tenant can never reach another's data.
    """
    principal = principal_var.get()
    if principal is None:
        raise RuntimeError("account_scope() outside an authenticated call")
    if principal.is_service:
        if not requested:
            raise OrqenError.of(grpc.StatusCode.INVALID_ARGUMENT, "account_id is required")
        return requested
    if requested and requested != principal.account_id:
        raise OrqenError.of(grpc.StatusCode.PERMISSION_DENIED, "This API key cannot act for another account.")
    return principal.account_id


def require_service() -> None:
    """Allow only other Orqen services (not API keys) to make this call."""
    principal = principal_var.get()
    if principal is None or not principal.is_service:
        raise OrqenError.of(grpc.StatusCode.PERMISSION_DENIED, "This method is reserved for Orqen services.")
