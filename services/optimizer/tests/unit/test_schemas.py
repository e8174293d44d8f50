"""Compressed tool schemas accept exactly the calls the originals accept: shown on every BFCL schema."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orqen_optimizer import bfcl
from orqen_optimizer.schemas import compress_schema, compress_tool, short_description
from orqen_optimizer.tokens import count_tokens


@functools.cache
def real_schemas() -> list[dict[str, Any]]:
    """Every distinct parameters schema of the single-turn BFCL categories, as JSON Schema."""
    seen: dict[str, dict[str, Any]] = {}
    for category in bfcl.SINGLE_TURN:
        for case in bfcl.cases(category):
            for tool in case.tools:
                schema = tool["function"]["parameters"]
                seen.setdefault(repr(schema), schema)
    return list(seen.values())


def values(names: list[str]) -> st.SearchStrategy[Any]:
    """JSON values, objects among them using the schema's own property names (so they get checked)."""
    scalars = (
        st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-1e6, 1e6, allow_nan=False) | st.text(max_size=8)
    )
    keys = st.sampled_from(names) if names else st.text(max_size=4)
    return st.recursive(
        scalars | st.sampled_from(["", "a", "celsius", "fahrenheit", "2024-01-01", "x@y.z"]),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys | st.text(max_size=3), inner, max_size=5),
        max_leaves=12,
    )


def property_names(schema: Any) -> list[str]:
    found: list[str] = []
    if isinstance(schema, dict):
        for name, sub in (schema.get("properties") or {}).items():
            found.append(name)
            found += property_names(sub)
        found += property_names(schema.get("items"))
    return found


def valid(schema: Any, instance: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(instance)


def test_the_bfcl_pool_is_the_real_one() -> None:
    assert len(real_schemas()) > 1000


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_validity_is_unchanged_on_real_schemas(data: st.DataObject) -> None:
    schema = data.draw(st.sampled_from(real_schemas()))
    compressed = compress_schema(schema)
    names = property_names(schema)
    required = {name: data.draw(values(names)) for name in schema.get("required", [])}
    for instance in (
        required,
        data.draw(values(names)),
        data.draw(st.dictionaries(st.sampled_from(names or ["a"]), values(names), max_size=6)),
    ):
        assert valid(compressed, instance) == valid(schema, instance), (schema, instance)


def test_every_real_schema_keeps_its_assertions_and_shrinks() -> None:
    before = after = 0
    for schema in real_schemas():
        compressed = compress_schema(schema)
        assert _assertions(compressed) == _assertions(schema)
        before += count_tokens(str(schema))
        after += count_tokens(str(compressed))
    assert after < before


def _assertions(schema: Any) -> Any:
    """The schema without descriptions and dropped annotations: what decides validity."""
    if isinstance(schema, list):
        return [_assertions(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("description", "title", "default", "examples", "example", "$comment", "deprecated"):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {n: _assertions(s) for n, s in value.items()}
        elif key in ("enum", "const", "required"):
            out[key] = value
        else:
            out[key] = _assertions(value)
    return out


def test_annotations_go_assertions_stay_and_names_are_data() -> None:
    schema = {
        "type": "object",
        "title": "Query",
        "description": "Search the catalogue.   It is fast.\nVery fast.",
        "properties": {
            "title": {"type": "string", "title": "Title", "default": "x", "examples": ["a"], "minLength": 1},
            "default": {"enum": ["a", {"title": "kept inside enum"}], "description": "A choice"},
            "when": {"type": "string", "format": "date-time", "pattern": "^2"},
            "tags": {"type": "array", "items": {"type": "string", "title": "Tag"}, "maxItems": 3, "uniqueItems": True},
            "shape": {"oneOf": [{"$ref": "#/$defs/circle"}, {"type": "null"}]},
        },
        "required": ["title"],
        "additionalProperties": False,
        "$defs": {"circle": {"type": "object", "properties": {"r": {"type": "number", "exclusiveMinimum": 0}}}},
        "x-vendor": {"title": "unknown keywords are copied"},
    }
    assert compress_schema(schema) == {
        "type": "object",
        "description": "Search the catalogue.",
        "properties": {
            "title": {"type": "string", "minLength": 1},
            "default": {"enum": ["a", {"title": "kept inside enum"}], "description": "A choice"},
            "when": {"type": "string", "format": "date-time", "pattern": "^2"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3, "uniqueItems": True},
            "shape": {"oneOf": [{"$ref": "#/$defs/circle"}, {"type": "null"}]},
        },
        "required": ["title"],
        "additionalProperties": False,
        "$defs": {"circle": {"type": "object", "properties": {"r": {"type": "number", "exclusiveMinimum": 0}}}},
        "x-vendor": {"title": "unknown keywords are copied"},
    }


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("The city name. Use the English spelling, e.g. Munich.", "The city name."),
        ("  spaced\n\n out  ", "spaced out"),
        ("e.g. Paris or London", "e.g. Paris or London"),
        ("Pick one, e.g. Paris. Or not.", "Pick one, e.g. Paris."),
        ("word " * 60, ("word " * 32).strip() + "…"),
    ],
)
def test_short_descriptions(text: str, short: str) -> None:
    assert short_description(text) == short


def test_a_tools_own_description_keeps_more_than_its_first_sentence() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather. Only for cities, never for countries.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string", "title": "City"}}},
        },
    }
    compressed = compress_tool(tool)
    assert compressed["function"]["description"] == "Current weather. Only for cities, never for countries."
    assert compressed["function"]["parameters"] == {"type": "object", "properties": {"city": {"type": "string"}}}
    assert tool["function"]["parameters"]["properties"]["city"]["title"] == "City"  # the input is not changed


def example_for(schema: Any) -> Any:
    """A simple instance of `schema`: required properties only, first enum values, small values."""
    if not isinstance(schema, dict):
        return None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example_for(properties.get(name, {})) for name in schema.get("required", [])}
    return {"array": [], "string": "x", "integer": 1, "number": 1.5, "boolean": True}.get(kind, "x")


def test_valid_calls_stay_valid_and_invalid_ones_invalid_on_every_real_schema() -> None:
    outcomes = {True: 0, False: 0}
    for schema in real_schemas():
        compressed = compress_schema(schema)
        good = example_for(schema)
        bad = {**good, "__extra": 1} if isinstance(good, dict) and schema.get("additionalProperties") is False else 7
        for instance in (good, bad):
            verdict = valid(schema, instance)
            assert valid(compressed, instance) == verdict, (schema, instance)
            outcomes[verdict] += 1
    # Both sides of the equivalence are exercised, most simple calls being valid ones.
    assert outcomes[True] > 0.8 * len(real_schemas()) and outcomes[False] > 0.8 * len(real_schemas())
