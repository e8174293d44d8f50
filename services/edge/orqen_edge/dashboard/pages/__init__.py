"""The dashboard's pages, one module each; app.py mounts ROUTES behind the page session guard."""

from __future__ import annotations

from orqen_edge.dashboard.pages import (
    billing,
    budgets,
    cache,
    keys,
    login,
    overview,
    providers,
    requests,
    routing,
    sessions,
    team,
    tools,
)

ROUTES = [
    *login.ROUTES,
    *overview.ROUTES,
    *requests.ROUTES,
    *sessions.ROUTES,
    *routing.ROUTES,
    *tools.ROUTES,
    *keys.ROUTES,
    *budgets.ROUTES,
    *cache.ROUTES,
    *providers.ROUTES,
    *team.ROUTES,
    *billing.ROUTES,
]
