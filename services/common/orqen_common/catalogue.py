"""The price and capability catalogue (catalogue.json): what each model costs and what it can do.

Prices are public list prices in USD per 1M tokens, taken on `prices_as_of`. Dispatch routes by
them (orqen/* strings, GET /v1/models); the request log is priced by orqen_common.prices instead
(genai-prices and the operator's overrides), never from here. It is validated once when first
loaded, so a bad edit fails at start-up rather than on a request.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Tier = Literal["fast", "balanced", "capable"]
TIERS: tuple[Tier, ...] = ("fast", "balanced", "capable")


class CatalogueEntry(BaseModel):
    """One model as a caller addresses it, its list prices and what routing needs to know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1, description="The model string a caller sends.")
    provider: str = Field(min_length=1, description="The provider translator that serves it.")
    aliases: tuple[str, ...] = Field((), description="Other names at the same prices (dated snapshots).")
    tier: Tier
    capability: int = Field(ge=1, le=10)
    context_window: int = Field(gt=0, description="Tokens of input and output the model accepts.")
    input: float = Field(ge=0, description="USD per 1M uncached input tokens.")
    output: float = Field(ge=0, description="USD per 1M output tokens.")
    cached_input: float | None = Field(None, ge=0, description="USD per 1M cache-read tokens; None: no discount.")
    vision: bool = False
    tools: bool = False
    refuses: frozenset[str] = Field(frozenset(), description="Request fields the model rejects.")
    legacy: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _cache_reads_cost_no_more_than_input(self) -> CatalogueEntry:
        if self.cached_input is not None and self.cached_input > self.input:
            raise ValueError(f"{self.model}: cached_input {self.cached_input} exceeds input {self.input}")
        return self

    @property
    def cached_input_price(self) -> float:
        """What a cache-read token costs: the input price when the provider gives no discount."""
        return self.input if self.cached_input is None else self.cached_input

    @property
    def blended_price(self) -> float:
        """One comparable price per 1M tokens, weighting input 3:1 as typical chat traffic does."""
        return (self.input * 3 + self.output) / 4

    def names(self) -> Iterable[str]:
        """Every string this entry answers to: its model, aliases, and `<provider>/<model>` forms."""
        for name in (self.model, *self.aliases):
            yield name
            if not name.startswith(self.provider + "/"):
                yield f"{self.provider}/{name}"


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prices_as_of: date
    sources: dict[str, str] = {}
    notes: list[str] = []
    models: list[CatalogueEntry] = Field(min_length=1)


class Catalogue:
    """The catalogue's entries, looked up by any of their names."""

    def __init__(self, entries: Iterable[CatalogueEntry], prices_as_of: date) -> None:
        self._entries = tuple(entries)
        self._prices_as_of = prices_as_of
        self._by_name: dict[str, CatalogueEntry] = {}
        for entry in self._entries:
            for name in entry.names():
                if name in self._by_name:
                    raise ValueError(f"{name!r} names both {self._by_name[name].model!r} and {entry.model!r}")
                self._by_name[name] = entry

    @classmethod
    def parse(cls, raw: str | bytes) -> Catalogue:
        """A catalogue from catalogue.json's text; pydantic.ValidationError or ValueError if it is invalid."""
        parsed = _CatalogueFile.model_validate_json(raw)
        return cls(parsed.models, parsed.prices_as_of)

    @property
    def entries(self) -> tuple[CatalogueEntry, ...]:
        return self._entries

    @property
    def prices_as_of(self) -> str:
        """When the prices were taken, as an ISO date (ListModelsResponse.prices_as_of)."""
        return self._prices_as_of.isoformat()

    def get(self, model: str) -> CatalogueEntry | None:
        """The entry `model` names ("gpt-4o", "openai/gpt-4o", "gpt-4o-2024-08-06"), or None."""
        return self._by_name.get(model)


@functools.cache
def load_catalogue() -> Catalogue:
    """The catalogue packaged with orqen-common, read and validated once per process."""
    raw = resources.files("orqen_common").joinpath("catalogue.json").read_bytes()
    return Catalogue.parse(raw)
