"""Alembic environment of the accounting schema (see orqen_common.migrations)."""

from orqen_common.migrations import run_env

run_env()
