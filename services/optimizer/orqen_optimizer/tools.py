"""What the optimizer knows of one tool definition, worked out once per distinct definition.

Agents send the same tools with every request, so each definition's views, words, BM25
document, compressed form and token counts are kept by its JSON: a request pays one
serialisation per tool, or nothing but a hash when the tool comes as its JSON text
(`raw_tool_facts`, the optimizer's own path: orqen_optimizer.chat_json).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import orjson

from orqen_optimizer.identifiers import aliases, identifier_words
from orqen_optimizer.keywords import Document, document, words
from orqen_optimizer.schemas import compress_tool
from orqen_optimizer.tokens import count_tokens

_FIRST_SENTENCE = re.compile(r"^(.{20,200}?[.!?])(\s|$)")


@dataclass(frozen=True, slots=True)
class ToolFacts:
    name: str
    well_formed: bool  # a function tool with a name: anything else makes the request pass through
    views: tuple[str, ...]  # the texts it is matched through: its description view, then its example queries
    tokens: int  # BPE tokens of its JSON, as sent upstream
    compressed: Any  # what is forwarded (orqen_optimizer.schemas); shared between requests, never mutated
    compressed_json: bytes  # the same, as JSON
    compressed_tokens: int
    name_words: frozenset[str]  # its name's words and the words its short ones stand for (identifiers)
    words: frozenset[str]  # every word of its views
    document: Document  # its views as one BM25 document
    description_head: str  # its description's first sentence (families)
    input_words: frozenset[str]  # the words of its parameters' names and descriptions (families)
    takes: frozenset[str]  # the words of its parameters' names (families)
    gives: frozenset[str]  # the words of what its description says it returns, `takes` aside (families)


def tool_facts(tool: Any) -> ToolFacts:
    try:
        return _facts(orjson.dumps(tool))
    except TypeError:  # not JSON-serialisable as it is: computed, not kept
        return _facts_of(tool, count_tokens(str(tool)))


@functools.lru_cache(maxsize=50_000)
def raw_tool_facts(text: bytes) -> ToolFacts:
    """The facts of the tool whose JSON text is `text`, as `tool_facts` finds them; kept by that text.

    Raises orjson.JSONDecodeError when `text` is not JSON.
    """
    return tool_facts(orjson.loads(text))


@functools.lru_cache(maxsize=50_000)
def _facts(serialised: bytes) -> ToolFacts:
    return _facts_of(orjson.loads(serialised), count_tokens(serialised.decode()))


def _facts_of(tool: Any, tokens: int) -> ToolFacts:
    name, views, compressed = tool_name(tool), tuple(_compute_views(tool)), compress_tool(tool)
    text = " ".join(views)
    function = tool.get("function") if isinstance(tool, dict) else None
    description = function.get("description") if isinstance(function, dict) else None
    compressed_json = orjson.dumps(compressed)
    return ToolFacts(
        name=name,
        well_formed=_well_formed(tool),
        views=views,
        tokens=tokens,
        compressed=compressed,
        compressed_json=compressed_json,
        compressed_tokens=count_tokens(compressed_json.decode()),
        name_words=frozenset(_name_terms(tool)),
        words=frozenset(words(text)),
        document=document(text),
        description_head=description_head(description) if isinstance(description, str) else "",
        input_words=frozenset(words(" ".join(_described(function)[1:]))) if isinstance(function, dict) else frozenset(),
        takes=(takes := _takes(function)),
        gives=frozenset(words(returned(description))) - takes if isinstance(description, str) else frozenset(),
    )


# A docstring's argument list ("Args: …" up to "Returns:"), and the first word saying what a tool returns.
_ARGUMENTS = re.compile(r"\b(?:args|arguments|parameters|params)\s*:.*?(?=\breturns?\s*:|\Z)", re.I | re.S)
_RETURNS = re.compile(r"\breturn(?:s|ed|ing)?\b", re.I)


def returned(description: str) -> str:
    """What a description says its tool returns: its text from the first "return" on, argument lists aside."""
    description = _ARGUMENTS.sub(" ", description)
    found = _RETURNS.search(description)
    return description[found.start() :] if found else ""


def _takes(function: Any) -> frozenset[str]:
    properties = _properties(function) if isinstance(function, dict) else {}
    return frozenset(w for prop in properties for w in identifier_words(str(prop)))


def _properties(function: dict[str, Any]) -> dict[Any, Any]:
    """A function's parameters' schemas by name ({} when it declares none)."""
    parameters = function.get("parameters")
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    return properties if isinstance(properties, dict) else {}


def _well_formed(tool: Any) -> bool:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        return False
    function = tool.get("function")
    return isinstance(function, dict) and isinstance(function.get("name"), str) and bool(function["name"])


def tool_views(tool: Any) -> list[str]:
    """The texts a tool is matched through: its description view, then its example queries."""
    return list(tool_facts(tool).views)


def tool_name(tool: Any) -> str:
    function = tool.get("function") if isinstance(tool, dict) else None
    return str(function.get("name", "")) if isinstance(function, dict) else ""


def _compute_views(tool: Any) -> list[str]:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict):
        return [""]
    parts = [" ".join(_name_terms(tool)), *_described(function)]
    examples = function.get("x-orqen-examples")
    extra = [str(e) for e in examples if isinstance(e, str)] if isinstance(examples, list) else []
    return [". ".join(p for p in parts if p)[:1000], *extra]


def _described(function: dict[str, Any]) -> list[str]:
    """A function's description, then each parameter's name (as words) and description."""
    parts = [str(function.get("description") or "")]
    for prop, schema in _properties(function).items():
        described = schema.get("description", "") if isinstance(schema, dict) else ""
        parts.append(f"{' '.join(identifier_words(prop))} {described}")
    return parts


def _name_terms(tool: Any) -> list[str]:
    """A tool's name as words, then the words its short forms stand for in its own text (identifiers)."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict):
        return []
    name = str(function.get("name", ""))
    return [*identifier_words(name), *aliases(name, words(" ".join(_described(function))))]


def description_head(description: str) -> str:
    """The first sentence of a tool's description: the part tools written together share (families)."""
    match = _FIRST_SENTENCE.match(description.strip())
    return match.group(1) if match else ""
