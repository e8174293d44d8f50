"""Routing: the account's preferences (a form), its models with their switches, insights, the
recall calibration and the recent routing decisions.

Reads and writes go through the account API's gRPC calls and its own functions
(orqen_edge.account.routing), so the rules are the account API's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from orqen_common.errors import OrqenError, not_found
from orqen_common.routing_modes import ROUTING_MODES
from orqen_edge.account.responses import plain
from orqen_edge.account.routing import (
    ModelToggle,
    PreferencesUpdate,
    preferences_json,
    routable,
    update_preferences,
)
from orqen_edge.dashboard.forms import form_fields, form_struct, refusal
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import chart, is_htmx, page
from orqen_edge.runtime import Runtime

_DAYS = 7
_TRACES = 20
_PREFERENCE_FIELDS = ("mode", "k_floor", "k_cap", "ab_control_share", "fallback_models")


@get("/dashboard/routing")
async def routing_page(runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]) -> Template:
    preferences = preferences_json(await runtime.downstream.get_routing_preferences(session.account_id))
    return page("routing.html", session, active="routing", **await _page_context(runtime, session, _form(preferences)))


async def _page_context(runtime: Runtime, session: DashboardSession, form: dict[str, Any]) -> dict[str, Any]:
    """Everything the page shows besides the form, asked of dispatch and accounting at once."""
    account, downstream = session.account_id, runtime.downstream
    models, insights, calibration, traces = await asyncio.gather(
        downstream.list_models(account),
        downstream.get_routing_insights(account, _DAYS),
        downstream.get_routing_calibration(account, _DAYS),
        downstream.list_routing_traces(account, _TRACES),
    )
    return {
        "form": form,
        "modes": ROUTING_MODES,
        "models": [plain(m) for m in routable(models)],
        "prices_as_of": models.prices_as_of,
        "provider_lists": [plain(p) for p in models.provider_lists],
        "insights": plain(insights),
        "calibration": plain(calibration),
        "calibration_chart": _calibration_chart([plain(b) for b in calibration.buckets]),
        "traces": [plain(t) for t in traces.traces],
        "days": _DAYS,
    }


@post("/dashboard/routing/preferences", status_code=200)
async def save_preferences(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    """Saves the form; a refusal is shown in the form, with what was typed kept."""
    fields = await form_fields(request)
    submitted = {**dict.fromkeys(_PREFERENCE_FIELDS, ""), **fields}
    try:
        update = form_struct(_preferences_update(fields), PreferencesUpdate)
        saved = preferences_json(await update_preferences(runtime, session.account_id, update))
    except OrqenError as err:
        message = refusal(err)
        if message is None:
            raise
        form: dict[str, Any] = {**submitted, "error": message, "error_field": _field_named(message)}
        if is_htmx(request):
            # 200: htmx swaps in only successful answers, and the form with its message is one.
            return page("_routing_preferences.html", session, active="routing", form=form, modes=ROUTING_MODES)
        context = await _page_context(runtime, session, form)
        return page("routing.html", session, active="routing", status_code=422, **context)
    if is_htmx(request):
        shown = {**_form(saved), "saved": True}
        return page("_routing_preferences.html", session, active="routing", form=shown, modes=ROUTING_MODES)
    return Redirect("/dashboard/routing", status_code=303)


@post("/dashboard/routing/models/toggle", status_code=200)
async def toggle_model(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    """Switches a model on or off for automatic routing (an unchecked box is not sent: off)."""
    fields = await form_fields(request)
    toggle = form_struct({"model": fields.get("model", ""), "enabled": fields.get("enabled", "false")}, ModelToggle)
    if toggle.model not in {m.id for m in routable(await runtime.downstream.list_models(session.account_id))}:
        raise not_found(f"No model {toggle.model!r} among this account's models.")
    await runtime.downstream.set_model_toggle(session.account_id, toggle.model, toggle.enabled)
    if not is_htmx(request):
        return Redirect("/dashboard/routing", status_code=303)
    models = routable(await runtime.downstream.list_models(session.account_id))
    model = next(plain(m) for m in models if m.id == toggle.model)
    return page("_routing_model_row.html", session, active="routing", model=model)


def _form(preferences: dict[str, Any]) -> dict[str, Any]:
    """The preferences as the form's fields show them."""
    return {**preferences, "fallback_models": ", ".join(preferences["fallback_models"])}


def _preferences_update(fields: dict[str, str]) -> dict[str, Any]:
    """The form's fields as the account API's update: the fallback chain is a comma- or line-separated
    list (blank: no chain, since the field shows the current one); other blank fields are kept."""
    update: dict[str, Any] = {k: v for k, v in fields.items() if k in _PREFERENCE_FIELDS}
    chain = fields.get("fallback_models", "").replace("\n", ",")
    update["fallback_models"] = [m.strip() for m in chain.split(",") if m.strip()]
    return update


def _field_named(message: str) -> str | None:
    """The form field a refusal is about: the one its message names first."""
    named = [(message.find(f), f) for f in _PREFERENCE_FIELDS if f in message]
    return min(named)[1] if named else None


def _calibration_chart(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall per score bucket: of the candidates scored in the bucket, the share the model then called."""
    return chart(
        "bar",
        [f"{b['score_min']:.1f}-{b['score_max']:.1f}" for b in buckets],
        [{"label": "called share", "data": [round(b["called_share"], 4) for b in buckets]}],
        scales={
            "x": {"title": {"display": True, "text": "router score"}},
            "y": {"min": 0, "max": 1, "title": {"display": True, "text": "called share"}},
        },
    )


ROUTES = (routing_page, save_preferences, toggle_model)
