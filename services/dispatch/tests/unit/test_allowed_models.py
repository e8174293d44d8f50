"""A restricted API key (CompleteRequest.allowed_models) is answered only by models it may use:
the account's fallbacks it may not use are skipped, and a routing string picks among the allowed."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from orqen.v1 import dispatch_pb2
from orqen_common.errors import OrqenError
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.router import ProviderRouter
from orqen_dispatch.servicer import DispatchServicer

from .test_credentials_fallback import SAVED, RecordingProvider

Request = Callable[..., dispatch_pb2.CompleteRequest]


def _servicer(
    dispatch_servicer: Callable[..., DispatchServicer], fallbacks: tuple[str, ...], failing: set[str]
) -> tuple[DispatchServicer, dict[str, RecordingProvider]]:
    providers = {name: RecordingProvider(name, frozenset(failing)) for name in ("openai", "anthropic", "bedrock")}
    router = ProviderRouter(dict(providers), "openai")
    return dispatch_servicer(router, AccountConfig(SAVED, fallbacks), ("openai",)), providers


async def test_fallbacks_the_key_may_not_use_are_skipped(
    dispatch_servicer: Callable[..., DispatchServicer], chat_request: Request
) -> None:
    servicer, providers = _servicer(dispatch_servicer, ("claude-haiku-4-5", "gpt-4o"), {"gpt-4o-mini"})
    call = chat_request("gpt-4o-mini")
    call.allowed_models.extend(["gpt-4o*"])
    answer = await servicer.Complete(call, None)  # type: ignore[arg-type]
    assert answer.summary.model == "gpt-4o"
    assert providers["anthropic"].calls == []  # claude-haiku-4-5 is not allowed: never called


async def test_a_routing_string_picks_only_allowed_models(
    dispatch_servicer: Callable[..., DispatchServicer], chat_request: Request
) -> None:
    servicer, _ = _servicer(dispatch_servicer, (), set())
    call = chat_request("orqen/cheap")
    call.allowed_models.extend(["claude-*"])
    answer = await servicer.Complete(call, None)  # type: ignore[arg-type]
    assert answer.summary.model.startswith("claude-")
    nothing = chat_request("orqen/cheap")
    nothing.allowed_models.extend(["no-such-model"])
    with pytest.raises(OrqenError) as refused:
        await servicer.Complete(nothing, None)  # type: ignore[arg-type]
    assert refused.value.kind.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.message == "No model 'orqen/cheap' would pick is allowed for this API key."
