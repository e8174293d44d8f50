"""Providers: the account's saved provider credentials (only their last 4 characters are ever
shown), adding one for OpenAI, Anthropic, Groq, Bedrock or any OpenAI-compatible endpoint, and
deleting one. Saved through the account API's own function (dispatch validates and seals).

The same panel's "Load-balanced models" card lists the account's balanced models, with a form that
adds or replaces one deployment of a model and buttons that delete one or a model's whole balancing
(orqen_edge.dashboard.balanced_models, through the account API's own function).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from orqen_common.deployments import STRATEGIES
from orqen_edge.account.keys import ProviderCredential, save_credential
from orqen_edge.account.responses import plain
from orqen_edge.dashboard.balanced_models import delete_deployment, save_from_form
from orqen_edge.dashboard.forms import attempt, form_fields, form_struct
from orqen_edge.dashboard.session_store import DashboardSession
from orqen_edge.dashboard.web import form_answer, lookup, page
from orqen_edge.runtime import Runtime

# The add forms, one per kind of provider: (form id, title). The "compatible" form names its provider.
FORMS = (
    ("openai", "OpenAI"),
    ("anthropic", "Anthropic"),
    ("groq", "Groq"),
    ("bedrock", "AWS Bedrock"),
    ("compatible", "OpenAI-compatible endpoint"),
)
# What a refused form shows again: never a secret.
_SHOWN_AGAIN = ("provider", "auth", "region", "base_url")


async def panel(runtime: Runtime, session: DashboardSession) -> dict[str, Any]:
    """What the panel shows, every form empty: the saved credentials, the load-balanced models, and
    the providers a deployment can name (the operator's and the saved ones: those dispatch lists)."""
    account = session.account_id
    credentials, balanced, models = await asyncio.gather(
        runtime.downstream.list_credentials(account),
        runtime.downstream.list_model_deployments(account),
        runtime.downstream.list_models(account),
    )
    providers = [plain(c) for c in credentials.credentials]
    usable = sorted({p.provider for p in models.provider_lists} | {p["provider"] for p in providers})
    return {
        "providers": providers,
        "forms": FORMS,
        "failed": None,
        "typed": {},
        "error": None,
        "balanced": [plain(m) for m in balanced.models],
        "usable_providers": usable,
        "strategies": STRATEGIES,
        "deployment": {},  # what the deployment form shows typed: nothing, so its defaults
        "deployment_error": None,
    }


@get("/dashboard/providers")
async def providers_page(runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]) -> Template:
    return page("providers.html", session, active="providers", **await panel(runtime, session))


@post("/dashboard/providers", status_code=200)
async def save_provider(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    """Saves (or replaces) the credential one of the add forms describes; a refusal is shown in that form."""
    fields = await form_fields(request, "form")
    chosen = (await request.form()).get("form")
    failed = chosen if chosen in dict(FORMS) else "compatible"
    saved, error = await attempt(
        lambda: save_credential(runtime, session.account_id, form_struct(fields, ProviderCredential))
    )
    if saved is not None:
        shown: dict[str, Any] = {"saved": saved.provider}
    else:
        shown = {"failed": failed, "typed": {k: v for k, v in fields.items() if k in _SHOWN_AGAIN}, "error": error}
    return await form_answer(
        request, session, error, active="providers", context=lambda: panel(runtime, session), **shown
    )


@post("/dashboard/providers/{credential_id:str}/delete", status_code=200)
async def delete_provider(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    credential_id: FromPath[str],
) -> Response[Any]:
    """Deletes a saved credential; another account's id is a 404, like an unknown one."""
    await lookup(runtime.downstream.delete_credential(session.account_id, credential_id))
    return await form_answer(request, session, None, active="providers", context=lambda: panel(runtime, session))


@post("/dashboard/providers/deployments", status_code=200)
async def save_balanced_deployment(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]
) -> Response[Any]:
    """Adds or replaces one deployment of a model and sets its strategy; a refusal is shown in the form
    with what was typed, and nothing is saved."""
    fields = await form_fields(request)
    saved, error = await attempt(lambda: save_from_form(runtime, session.account_id, fields))
    if saved is not None:
        shown: dict[str, Any] = {"deployment_saved": f"{fields['name']} of {saved.model}"}
    else:
        shown = {"deployment": fields, "deployment_error": error}
    return await form_answer(
        request, session, error, active="providers", context=lambda: panel(runtime, session), **shown
    )


# A model's name may hold "/" (a routed "provider/model"), so it is the path's last part; a
# deployment's name never does.
@post("/dashboard/providers/deployments/delete-deployment/{deployment:str}/{model:path}", status_code=200)
async def delete_balanced_deployment(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    deployment: FromPath[str],
    model: FromPath[str],
) -> Response[Any]:
    """Deletes one deployment of a model (its last one: the model's balancing); unknown ones are a 404."""
    await delete_deployment(runtime, session.account_id, model.lstrip("/"), deployment)
    return await form_answer(request, session, None, active="providers", context=lambda: panel(runtime, session))


@post("/dashboard/providers/deployments/delete-model/{model:path}", status_code=200)
async def delete_balanced_model(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    session: NamedDependency[DashboardSession],
    model: FromPath[str],
) -> Response[Any]:
    """Stops balancing the model: requests for it go to its provider as before. One the account does not
    balance (another account's included) is a 404."""
    await lookup(runtime.downstream.delete_model_deployments(session.account_id, model.lstrip("/")))
    return await form_answer(request, session, None, active="providers", context=lambda: panel(runtime, session))


ROUTES = (
    providers_page,
    save_provider,
    delete_provider,
    save_balanced_deployment,
    delete_balanced_deployment,
    delete_balanced_model,
)
