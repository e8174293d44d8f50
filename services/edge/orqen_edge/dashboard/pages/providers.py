"""Providers: the account's saved provider credentials (only their last 4 characters are ever
shown), adding one for OpenAI, Anthropic, Groq, Bedrock or any OpenAI-compatible endpoint, and
deleting one. Saved through the account API's own function (dispatch validates and seals)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from orqen_edge.account.keys import ProviderCredential, save_credential
from orqen_edge.account.responses import plain
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


async def _providers(runtime: Runtime, session: DashboardSession) -> list[dict[str, Any]]:
    return [plain(c) for c in (await runtime.downstream.list_credentials(session.account_id)).credentials]


def _context(providers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"providers": providers, "forms": FORMS, "failed": None, "typed": {}, "error": None, **extra}


async def _all(runtime: Runtime, session: DashboardSession) -> dict[str, Any]:
    """What the page shows after a change: the credentials, every add form empty."""
    return _context(await _providers(runtime, session))


@get("/dashboard/providers")
async def providers_page(runtime: NamedDependency[Runtime], session: NamedDependency[DashboardSession]) -> Template:
    return page("providers.html", session, active="providers", **_context(await _providers(runtime, session)))


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
        request, session, error, active="providers", context=lambda: _all(runtime, session), **shown
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
    return await form_answer(request, session, None, active="providers", context=lambda: _all(runtime, session))


ROUTES = (providers_page, save_provider, delete_provider)
