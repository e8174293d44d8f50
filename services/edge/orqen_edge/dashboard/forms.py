"""HTML forms of the dashboard's settings pages, read into the account API's own request types.

A form is decoded into the same msgspec struct the JSON route decodes its body into, so the
field limits are the account API's; what the services then refuse (a k_cap below k_floor, a
Bedrock key without its secret) comes back as the same invalid_request, shown in the form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
import msgspec
from litestar import Request

from orqen_common.errors import OrqenError, invalid_request

T = TypeVar("T", bound=msgspec.Struct)
R = TypeVar("R")


async def form_fields(request: Request[Any, Any, Any], *ignored: str) -> dict[str, str]:
    """The submitted fields that hold a value (blank ones are left out), without `ignored` ones.

    The CSRF token is always left out: it is the dashboard's, not part of the request type.
    """
    form = await request.form()
    skip = {"csrf_token", *ignored}
    return {k: v.strip() for k, v in form.items() if k not in skip and isinstance(v, str) and v.strip()}


def form_struct(fields: Mapping[str, Any], shape: type[T]) -> T:
    """`shape` from form values (numbers and booleans given as text); a 400 naming the field that does not fit."""
    try:
        return msgspec.convert(dict(fields), shape, strict=False)
    except msgspec.ValidationError as err:
        raise invalid_request(f"The form is not valid: {err}.") from None


def refusal(err: OrqenError) -> str | None:
    """The message to show in a form when the services refused what it asked for; None for other failures."""
    return err.message if err.kind.grpc_code == grpc.StatusCode.INVALID_ARGUMENT else None


async def attempt(call: Callable[[], Awaitable[R]]) -> tuple[R | None, str | None]:
    """What `call` answered and None, or None and the services' refusal to show in the form (a form that
    does not fit its request type included: `form_struct` runs inside `call`); other failures raise."""
    try:
        return await call(), None
    except OrqenError as err:
        if (message := refusal(err)) is None:
            raise
        return None, message
