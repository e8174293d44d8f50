"""The dashboard's pages, one module each; app.py mounts ROUTES behind the page session guard."""

from __future__ import annotations

from orqen_edge.dashboard.pages import billing, login, overview, team

ROUTES = [
    *login.ROUTES,
    *overview.ROUTES,
    *team.ROUTES,
    *billing.ROUTES,
]
