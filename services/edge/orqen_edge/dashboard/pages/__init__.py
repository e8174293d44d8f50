"""The dashboard's pages, one module each; app.py mounts ROUTES behind the page session guard."""

from __future__ import annotations

from orqen_edge.dashboard.pages import keys, login, overview, providers, routing, tools

ROUTES = [
    *login.ROUTES,
    *overview.ROUTES,
    *routing.ROUTES,
    *tools.ROUTES,
    *keys.ROUTES,
    *providers.ROUTES,
]
