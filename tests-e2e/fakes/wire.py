"""Validation helpers shared by the fake providers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import TypeAdapter, ValidationError


def materialize(value: Any) -> Any:
    """Consume pydantic's lazy iterable validators so every nested item is really validated."""
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [materialize(v) for v in value]
    if isinstance(value, Iterator):
        return [materialize(v) for v in value]
    return value


def validate_typed_dict(adapter: TypeAdapter[Any], allowed_keys: set[str], body: Any) -> str | None:
    """None when `body` is valid for the SDK's request type; otherwise what is wrong."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    unknown = sorted(set(body) - allowed_keys)
    if unknown:
        return f"unknown fields: {', '.join(unknown)}"
    try:
        materialize(adapter.validate_python(body))
    except ValidationError as err:
        return str(err)
    return None
