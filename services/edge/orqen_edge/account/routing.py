"""Models and routing preferences: GET /v1/models and /v1/account/routing/*.

Which models an account can use is dispatch's knowledge (catalogue, connected providers,
measured latency); what the owner chose is accounting's (preferences, toggles).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from orqen.v1 import accounting_pb2, dispatch_pb2
from orqen_common.context import Principal
from orqen_common.errors import invalid_request, not_found
from orqen_common.proxy_families import ORQ_BASES
from orqen_edge.account.responses import PageLimit, listing, plain
from orqen_edge.request_body import read_json, read_json_object
from orqen_edge.runtime import Runtime


def _openai_model(model: dispatch_pb2.ModelInfo) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": 0, "owned_by": model.provider}


@get(
    ["/v1/models", *(f"{base}/models" for base in ORQ_BASES)],
    summary="Models the account can use (OpenAI list format), orqen/* included",
)
async def list_models(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    models = await runtime.downstream.list_models(principal.account_id)
    return {"object": "list", "data": [_openai_model(m) for m in models.models if m.enabled]}


@get(
    ["/v1/models/{model:path}", *(f"{base}/models/{{model:path}}" for base in ORQ_BASES)],
    summary="One model the account can use",
)
async def get_model(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], model: FromPath[str]
) -> dict[str, Any]:
    wanted = model.lstrip("/")
    for entry in (await runtime.downstream.list_models(principal.account_id)).models:
        if entry.id == wanted and entry.enabled:
            return _openai_model(entry)
    raise not_found(f"The model '{wanted}' does not exist or is not available to this account.")


@get("/v1/account/routing/models", summary="Models available from connected providers")
async def routing_models(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    models = await runtime.downstream.list_models(principal.account_id)
    data = [
        {"id": m.id, "provider": m.provider, "tier": m.tier, "enabled": m.enabled}
        for m in models.models
        if not m.id.startswith("orqen/")
    ]
    return {"object": "list", "data": data}


@get("/v1/account/routing/models/status", summary="Models with enabled state, prices and measured performance")
async def routing_models_status(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    models = await runtime.downstream.list_models(principal.account_id)
    data = [plain(m) for m in models.models if not m.id.startswith("orqen/")]
    return {"object": "list", "data": data, "prices_as_of": models.prices_as_of}


@post("/v1/account/routing/models/toggle", summary="Enable or disable a model for automatic routing", status_code=200)
async def toggle_model(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid_request("Send {'model': '<model id>', 'enabled': true|false}.")
    if not isinstance(body.get("enabled"), bool):
        raise invalid_request("'enabled' must be true or false.")
    toggles = await runtime.downstream.set_model_toggle(principal.account_id, body["model"], body["enabled"])
    return listing(toggles.toggles)


_PREFERENCE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "mode": str,
    "k_floor": int,
    "k_cap": int,
    "ab_control_share": (int, float),
    "fallback_models": list,
}


def _preferences_json(prefs: accounting_pb2.RoutingPreferences) -> dict[str, Any]:
    return {k: v for k, v in plain(prefs).items() if k != "account_id"}


@get("/v1/account/routing/preferences", summary="Routing mode, K bounds, A/B control share, fallback chain")
async def get_preferences(runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]) -> dict[str, Any]:
    return _preferences_json(await runtime.downstream.get_routing_preferences(principal.account_id))


@put("/v1/account/routing/preferences", summary="Update routing preferences (fields not sent are kept)")
async def put_preferences(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], principal: NamedDependency[Principal]
) -> dict[str, Any]:
    body = await read_json_object(request)
    unknown = sorted(set(body) - set(_PREFERENCE_FIELDS))
    if unknown:
        raise invalid_request(f"Unknown fields: {', '.join(unknown)}; expected {', '.join(_PREFERENCE_FIELDS)}.")
    for field, kind in _PREFERENCE_FIELDS.items():
        if field in body and (not isinstance(body[field], kind) or isinstance(body[field], bool)):
            raise invalid_request(f"'{field}' has the wrong type.")
    current = await runtime.downstream.get_routing_preferences(principal.account_id)
    updated = accounting_pb2.RoutingPreferences(
        account_id=principal.account_id,
        mode=body.get("mode", current.mode),
        k_floor=body.get("k_floor", current.k_floor),
        k_cap=body.get("k_cap", current.k_cap),
        ab_control_share=float(body.get("ab_control_share", current.ab_control_share)),
        fallback_models=[str(m) for m in body.get("fallback_models", list(current.fallback_models))],
    )
    return _preferences_json(await runtime.downstream.put_routing_preferences(updated))


_Days = Annotated[int, QueryParameter(ge=1, le=90, description="The last N days.")]


@get("/v1/account/routing/traces", summary="Recent routing decisions with intent, K reason and top candidates")
async def routing_traces(
    runtime: NamedDependency[Runtime],
    principal: NamedDependency[Principal],
    limit: PageLimit = 50,
) -> dict[str, Any]:
    return listing((await runtime.downstream.list_routing_traces(principal.account_id, limit)).traces)


@get("/v1/account/routing/calibration", summary="K policy and recall calibration buckets from A/B control traffic")
async def routing_calibration(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 7
) -> dict[str, Any]:
    calibration = await runtime.downstream.get_routing_calibration(principal.account_id, days)
    out = plain(calibration)
    out["policy"] = _preferences_json(calibration.policy)
    return out


@get("/v1/account/routing/insights", summary="Best-recall routing mode, fastest and most-used models")
async def routing_insights(
    runtime: NamedDependency[Runtime], principal: NamedDependency[Principal], days: _Days = 7
) -> dict[str, Any]:
    return plain(await runtime.downstream.get_routing_insights(principal.account_id, days))


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
)
