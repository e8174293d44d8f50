"""Models and routing preferences: GET /v1/models and /v1/account/routing/*.

Which models an account can use is dispatch's knowledge (its connected providers' own model
lists, capabilities, prices, measured latency); what the owner chose is accounting's
(preferences, toggles).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from msgspec import UNSET, Meta, UnsetType

from orqen.v1 import accounting_pb2, dispatch_pb2
from orqen_common.allowed_models import ROUTING_PREFIX
from orqen_common.context import Principal
from orqen_common.errors import not_found
from orqen_common.proxy_families import ORQ_BASES
from orqen_edge.account.responses import PageLimit, listing, plain
from orqen_edge.openapi import API_KEY, AUTHENTICATED, BODY, errors, json_body
from orqen_edge.request_body import read_struct
from orqen_edge.runtime import Runtime

# The K bounds travel as int32 in accounting's messages.
_K = Annotated[int, Meta(ge=0, le=2**31 - 1)]


class ModelToggle(msgspec.Struct):
    """Whether automatic routing may choose a model."""

    model: Annotated[str, Meta(min_length=1, description="A model id from /v1/account/routing/models.")]
    enabled: bool


class PreferencesUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Routing preferences to change; fields not sent are kept."""

    mode: str | UnsetType = UNSET
    k_floor: _K | UnsetType = UNSET
    k_cap: Annotated[_K, Meta(description="0: no cap.")] | UnsetType = UNSET
    ab_control_share: float | UnsetType = UNSET
    fallback_models: list[str] | UnsetType = UNSET


class Capabilities(msgspec.Struct):
    """What a model takes: tool calls and image input (from its provider's list, the price library or configuration)."""

    tools: bool
    vision: bool


class Pricing(msgspec.Struct):
    """USD per 1M tokens."""

    input: float
    output: float
    cached_input: float


class Model(msgspec.Struct):
    """A model in OpenAI's format, with Orqen's fields after OpenAI's four."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    kind: Annotated[
        str,
        Meta(description='"chat", "embedding", "image", "audio", "moderation", "rerank", ... ; "router" for orqen/*.'),
    ]
    provider: str
    capabilities: Capabilities | None = None
    context_window: Annotated[int | None, Meta(description="Tokens in and out it accepts; null: unknown.")] = None
    max_output_tokens: Annotated[int | None, Meta(description="The most tokens it writes; null: unknown.")] = None
    pricing: Annotated[Pricing | None, Meta(description="Null when no price is known.")] = None
    listed_at: Annotated[int | None, Meta(description="When its provider's list was fetched (unix seconds).")] = None


class ProviderList(msgspec.Struct):
    """How fresh one connected provider's model list is."""

    provider: str
    status: Annotated[
        Literal["fresh", "stale", "unavailable"],
        Meta(description="stale: older than the TTL or its refresh failed (the last good copy is served)."),
    ]
    fetched_at: Annotated[int | None, Meta(description="Unix seconds; null when no list was ever fetched.")]
    age_seconds: float
    models: int
    error: Annotated[str | None, Meta(description="The last refresh's failure.")] = None


class ModelList(msgspec.Struct):
    """Models in OpenAI's list format, and the state of each provider's list."""

    object: Literal["list"]
    data: list[Model]
    providers: list[ProviderList]


def routable(models: dispatch_pb2.ListModelsResponse) -> list[dispatch_pb2.ModelInfo]:
    """The account's models that routing can choose and an owner can switch: not the orqen/* strings."""
    return [m for m in models.models if not m.id.startswith(ROUTING_PREFIX)]


def _openai_model(model: dispatch_pb2.ModelInfo) -> Model:
    if model.kind == "router":
        return Model(id=model.id, object="model", created=0, owned_by="orqen", kind="router", provider="orqen")
    return Model(
        id=model.id,
        object="model",
        created=model.created or model.listed_at,
        owned_by=model.provider,
        kind=model.kind,
        provider=model.provider,
        capabilities=Capabilities(tools=model.tools, vision=model.vision),
        context_window=model.context_window or None,
        max_output_tokens=model.max_output_tokens or None,
        pricing=Pricing(model.input_price, model.output_price, model.cached_input_price) if model.priced else None,
        listed_at=model.listed_at or None,
    )


def provider_lists(models: dispatch_pb2.ListModelsResponse) -> list[ProviderList]:
    """Each connected provider's list: its status, age and last failure."""
    return [
        ProviderList(
            provider=p.provider,
            status=p.status,  # type: ignore[arg-type]  # dispatch sends one of the three
            fetched_at=p.fetched_at or None,
            age_seconds=p.age_seconds,
            models=p.models,
            error=p.error or None,
        )
        for p in models.provider_lists
    ]


@get(
    ["/v1/models", *(f"{base}/models" for base in ORQ_BASES)],
    summary="Models the account can use (OpenAI list format), orqen/* included",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def list_models(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> ModelList:
    models = await runtime.downstream.list_models(principal.account_id)
    data = [_openai_model(m) for m in models.models if m.enabled]
    return ModelList(object="list", data=data, providers=provider_lists(models))


@get(
    ["/v1/models/{model:path}", *(f"{base}/models/{{model:path}}" for base in ORQ_BASES)],
    summary="One model the account can use",
    security=API_KEY,
    responses=errors(*AUTHENTICATED, 404),
)
async def get_model(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], model: FromPath[str]
) -> Model:
    wanted = model.lstrip("/")
    for entry in (await runtime.downstream.list_models(principal.account_id)).models:
        if entry.id == wanted and entry.enabled:
            return _openai_model(entry)
    raise not_found(f"The model '{wanted}' does not exist or is not available to this account.")


@get(
    "/v1/account/routing/models",
    summary="Models available from connected providers",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def routing_models(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    models = await runtime.downstream.list_models(principal.account_id)
    data = [
        {
            "id": m.id,
            "provider": m.provider,
            "kind": m.kind,
            "tier": m.tier,
            "capability": m.capability,
            "tools": m.tools,
            "vision": m.vision,
            "context_window": m.context_window or None,
            "enabled": m.enabled,
        }
        for m in routable(models)
    ]
    return {"object": "list", "data": data, "providers": [msgspec.to_builtins(p) for p in provider_lists(models)]}


@get(
    "/v1/account/routing/models/status",
    summary="Models with enabled state, prices and measured performance",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def routing_models_status(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    models = await runtime.downstream.list_models(principal.account_id)
    data = [plain(m) for m in routable(models)]
    providers = [msgspec.to_builtins(p) for p in provider_lists(models)]
    return {"object": "list", "data": data, "prices_as_of": models.prices_as_of, "providers": providers}


@post(
    "/v1/account/routing/models/toggle",
    summary="Enable or disable a model for automatic routing",
    status_code=200,
    security=API_KEY,
    operation_class=json_body(ModelToggle),
    responses=errors(*AUTHENTICATED, *BODY),
)
async def toggle_model(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    body = await read_struct(request, ModelToggle)
    toggles = await runtime.downstream.set_model_toggle(principal.account_id, body.model, body.enabled)
    return listing(toggles.toggles)


def preferences_json(prefs: accounting_pb2.RoutingPreferences) -> dict[str, Any]:
    """Preferences as the account API answers them (without the account id)."""
    return {k: v for k, v in plain(prefs).items() if k != "account_id"}


@get(
    "/v1/account/routing/preferences",
    summary="Routing mode, K bounds, A/B control share, fallback chain",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def get_preferences(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return preferences_json(await runtime.downstream.get_routing_preferences(principal.account_id))


@put(
    "/v1/account/routing/preferences",
    summary="Update routing preferences (fields not sent are kept)",
    security=API_KEY,
    operation_class=json_body(PreferencesUpdate),
    responses=errors(*AUTHENTICATED, *BODY),
)
async def put_preferences(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    body = await read_struct(request, PreferencesUpdate)
    return preferences_json(await update_preferences(runtime, principal.account_id, body))


async def update_preferences(
    runtime: Runtime, account_id: str, body: PreferencesUpdate
) -> accounting_pb2.RoutingPreferences:
    """Change the fields `body` sets; accounting checks that the result makes sense (400 otherwise)."""
    current = await runtime.downstream.get_routing_preferences(account_id)
    updated = accounting_pb2.RoutingPreferences(
        account_id=account_id,
        mode=current.mode if body.mode is UNSET else body.mode,
        k_floor=current.k_floor if body.k_floor is UNSET else body.k_floor,
        k_cap=current.k_cap if body.k_cap is UNSET else body.k_cap,
        ab_control_share=current.ab_control_share if body.ab_control_share is UNSET else body.ab_control_share,
        fallback_models=current.fallback_models if body.fallback_models is UNSET else body.fallback_models,
    )
    return await runtime.downstream.put_routing_preferences(updated)


_Days = Annotated[int, QueryParameter(ge=1, le=90, description="The last N days.")]


@get(
    "/v1/account/routing/traces",
    summary="Recent routing decisions with intent, K reason and top candidates",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def routing_traces(
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    limit: PageLimit = 50,
) -> dict[str, Any]:
    return listing((await runtime.downstream.list_routing_traces(principal.account_id, limit)).traces)


@get(
    "/v1/account/routing/calibration",
    summary="K policy, recall calibration buckets from A/B control traffic (recall with and without learned tool "
    "usage), and what was learned",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def routing_calibration(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 7
) -> dict[str, Any]:
    calibration = await runtime.downstream.get_routing_calibration(principal.account_id, days)
    out = plain(calibration)
    out["policy"] = preferences_json(calibration.policy)
    return out


@get(
    "/v1/account/routing/insights",
    summary="Best-recall routing mode, fastest and most-used models",
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def routing_insights(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 7
) -> dict[str, Any]:
    return plain(await runtime.downstream.get_routing_insights(principal.account_id, days))


@delete(
    "/v1/account/routing/learning",
    summary="Forget what routing learned from the tools the account's models called",
    status_code=200,
    security=API_KEY,
    responses=errors(*AUTHENTICATED),
)
async def reset_learning(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return plain(await runtime.downstream.reset_tool_learning(principal.account_id))


ROUTES = (
    list_models,
    get_model,
    routing_models,
    routing_models_status,
    toggle_model,
    get_preferences,
    put_preferences,
    routing_traces,
    routing_calibration,
    routing_insights,
    reset_learning,
)
