"""Alembic environment of the billing schema (see orqen_common.migrations)."""

from orqen_common.migrations import run_env

run_env()
