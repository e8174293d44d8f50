"""Shorter tool schemas that accept exactly the same calls.

JSON Schema keywords are either assertions (they decide whether a call is valid) or
annotations (they only inform). Every assertion is kept as it is — types, required,
enums, consts, formats, patterns, bounds, nesting, combinators, references — and so is
every keyword this module does not know. Of the annotations, `title`, `examples`,
`default`, `$comment` and the like are dropped, and descriptions are cut to their first
sentence (a model needs what a parameter is, rather than an essay about it), a tool's
own description to 400 characters, with whitespace collapsed. Names inside `properties`, `$defs` and the other maps of
subschemas are data, not keywords: a property called "title" stays.

The walk follows the structure of JSON Schema (2020-12 and draft 7) so that nothing that
is not a schema is ever rewritten: enum and const values, defaults inside them, and
unknown keywords' values are copied untouched.
"""

from __future__ import annotations

import re
from typing import Any

# Annotations that never change which instances validate.
DROPPED = frozenset({"title", "examples", "example", "default", "$comment", "deprecated", "readOnly", "writeOnly"})
# Keywords whose value is one subschema.
_ONE = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "propertyNames",
        "contains",
        "not",
        "if",
        "then",
        "else",
    }
)
# Keywords whose value is a list of subschemas.
_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
# Keywords whose value maps names to subschemas.
_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})

DESCRIPTION_CHARS = 160  # a parameter's first sentence longer than this is cut at a word boundary
FUNCTION_DESCRIPTION_CHARS = 400
# A sentence ends at ".", "!" or "?" followed by a space and a capital, unless the period
# closes an abbreviation ("e.g. Paris") or an initial ("J. Smith").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "vs.", "approx.", "no.", "nr.", "mr.", "mrs.", "ms.", "dr.", "st."})
_SPACE = re.compile(r"\s+")


def short_description(text: str, limit: int = DESCRIPTION_CHARS, first_sentence: bool = True) -> str:
    """Whitespace collapsed, the first sentence only (unless told otherwise), at most `limit` characters.

    A cut falls between words and is marked with an ellipsis.
    """
    text = _SPACE.sub(" ", text).strip()
    if first_sentence:
        text = _first_sentence(text)
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def _first_sentence(text: str) -> str:
    for end in _SENTENCE_END.finditer(text):
        last_word = text[: end.start()].rsplit(" ", 1)[-1].lower()
        if last_word not in _ABBREVIATIONS and len(last_word) > 2:
            return text[: end.start()]
    return text


def compress_schema(schema: Any) -> Any:
    """A schema accepting exactly the instances `schema` accepts, with fewer tokens."""
    if isinstance(schema, list):  # draft 4-7 tuple "items"
        return [compress_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema  # true / false schemas
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in DROPPED:
            continue
        if key == "description" and isinstance(value, str):
            short = short_description(value)
            if short:
                out[key] = short
        elif key in _ONE:
            out[key] = compress_schema(value)
        elif key in _LIST and isinstance(value, list):
            out[key] = [compress_schema(s) for s in value]
        elif key in _MAP and isinstance(value, dict):
            out[key] = {name: compress_schema(sub) for name, sub in value.items()}
        elif key == "dependencies" and isinstance(value, dict):  # draft 7: a schema or a list of names
            out[key] = {n: v if isinstance(v, list) else compress_schema(v) for n, v in value.items()}
        else:
            out[key] = value  # an assertion, or a keyword unknown here: copied as it is
    return out


def compress_tool(tool: Any) -> Any:
    """An OpenAI-format tool with its description and parameters schema compressed."""
    if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
        return tool
    function = dict(tool["function"])
    if isinstance(function.get("description"), str):
        # What the tool is for decides whether the model picks it: more of it is kept.
        function["description"] = short_description(
            function["description"], FUNCTION_DESCRIPTION_CHARS, first_sentence=False
        )
    if "parameters" in function:
        function["parameters"] = compress_schema(function["parameters"])
    return {**tool, "function": function}
