"""What a request cost: the one place anything in Orqen prices tokens.

Prices come from genai-prices (pydantic/genai-prices, MIT), a maintained and versioned price
library whose data ships inside the package: Orqen reads only that bundled snapshot and never
starts its `UpdatePrices` (the one part of it that fetches), so pricing never touches the
network and the version pinned in constraints.txt says exactly which prices are used. The
library brings cached-input, cache-write and tiered (long-context) prices where a provider has
them, and prices that changed on a date are picked by the request's time.

Operators override the library or price models it does not know (their own OpenAI-compatible
providers) in a JSON file, ORQEN_PRICES_FILE; an override wins over the library. A model that
neither prices has no cost: `Prices.price` returns None, and the caller records it as unknown,
never as $0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Protocol, Self

from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Tier, TieredPrices, Usage, calc_unit_price
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from orqen_common.settings import OrqenSettings

LIBRARY = "genai-prices"
_PER_MTOK = 1_000_000

# Orqen's provider names where genai-prices spells them otherwise. Any other provider is priced by
# the library only when its name is a library provider id ("deepseek", "mistral", "together", ...):
# an operator's own provider named after no known one is priced by overrides alone.
_LIBRARY_PROVIDER = {"bedrock": "aws"}


class TokenCounts(Protocol):
    """A request's tokens as orqen.v1.Usage carries them (cache reads and writes are part of input)."""

    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_input_tokens(self) -> int: ...
    @property
    def cache_write_input_tokens(self) -> int: ...


@dataclass(frozen=True)
class Cost:
    """What one request cost in USD, and by which part of its tokens.

    `input` is the uncached input; `total` can exceed the sum of the four parts when the price
    has a part of its own (a per-request fee).
    """

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    total: Decimal
    source: str  # "override" or "genai-prices <version>"


@dataclass(frozen=True)
class ListPrice:
    """A model's prices in USD per 1M tokens, below any long-context tier (for listings and routing).

    A part without a price of its own costs `input`, as `Prices.price` charges it.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write: Decimal
    source: str


class TierPrice(BaseModel):
    """From `start` input tokens on, the whole request pays `price` (the providers' cliff model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: int = Field(gt=0, description="Input tokens above which this price applies.")
    price: Decimal = Field(ge=0, description="USD per 1M tokens.")


class TieredPrice(BaseModel):
    """A price that changes with the request's input tokens (long-context pricing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: Decimal = Field(ge=0, description="USD per 1M tokens below the first tier.")
    tiers: list[TierPrice] = Field(min_length=1)


PriceValue = Decimal | TieredPrice


class PriceOverride(BaseModel):
    """An operator's price for one model, USD per 1M tokens.

    Without `cached_input` cache reads cost `input`; without `cache_write` cache writes do.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: PriceValue
    output: PriceValue
    cached_input: PriceValue | None = None
    cache_write: PriceValue | None = None

    @field_validator("input", "output", "cached_input", "cache_write")
    @classmethod
    def _not_negative(cls, value: PriceValue | None) -> PriceValue | None:
        if isinstance(value, Decimal) and (not value.is_finite() or value < 0):
            raise ValueError("a price is a finite number of USD per 1M tokens, 0 or more")
        return value

    def model_price(self) -> ModelPrice:
        """The override as genai-prices' ModelPrice, so the library's own calculation prices it."""
        return ModelPrice(
            input_mtok=_library_value(self.input),
            output_mtok=_library_value(self.output),
            cache_read_mtok=_library_value(self.cached_input),
            cache_write_mtok=_library_value(self.cache_write),
        )


class PriceOverrides(RootModel[dict[str, PriceOverride]]):
    """ORQEN_PRICES_FILE: `{"<provider>/<model>": {...}}`; `<provider>/*` prices every model of a provider."""

    @field_validator("root")
    @classmethod
    def _keys_name_a_provider_and_model(cls, value: dict[str, PriceOverride]) -> dict[str, PriceOverride]:
        for key in value:
            provider, _, model = key.partition("/")
            if not provider or not model:
                raise ValueError(f"{key!r}: keys are '<provider>/<model>' or '<provider>/*'")
        return value


class PriceSettings(OrqenSettings):
    """Where operator price overrides come from; the file is read and checked with the settings, at start."""

    prices_file: Path | None = Field(
        None,
        description='JSON file of price overrides and additions, USD per 1M tokens: {"<provider>/<model>": '
        '{"input": …, "output": …, "cached_input": …, "cache_write": …}}; an override wins over genai-prices.',
    )
    _overrides: PriceOverrides | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _read_prices_file(self) -> Self:
        if self.prices_file is None:
            return self
        try:
            self._overrides = PriceOverrides.model_validate_json(self.prices_file.read_bytes())
        except OSError as err:
            raise ValueError(f"ORQEN_PRICES_FILE: cannot read {self.prices_file}: {err.strerror}") from None
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in err.errors())
            raise ValueError(f"ORQEN_PRICES_FILE {self.prices_file}: {problems}") from None
        return self

    @property
    def price_overrides(self) -> PriceOverrides | None:
        """The overrides ORQEN_PRICES_FILE holds, None without one."""
        return self._overrides


def _library_value(value: PriceValue | None) -> Decimal | TieredPrices | None:
    if isinstance(value, TieredPrice):
        return TieredPrices(base=value.base, tiers=[Tier(start=t.start, price=t.price) for t in value.tiers])
    return value


# The price keys `_per_token_cost` covers: the four token counts Orqen reports, and units it never
# reports (1-hour cache writes, searches), which price nothing. Most models have no others; the
# rest (audio, images, per-request fees, ...) go through the library's general calculation.
_PER_TOKEN_KEYS = frozenset(
    {
        "input_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "output_mtok",
        "cache_write_1h_mtok",
        "web_searches_kcount",
        "storage_searches_kcount",
    }
)


@dataclass(frozen=True)
class _Shape:
    """What a ModelPrice prices, as far as Orqen's token counts go."""

    per_token_only: bool  # `_per_token_cost` gives the library's result
    prices_input: bool  # some input-token unit has a price
    prices_output: bool

    def prices(self, usage: TokenCounts) -> bool:
        """Whether tokens price this usage: not a model priced by audio hour, character or image
        alone, nor tokens of a direction the model has no price for."""
        if usage.input_tokens and not self.prices_input:
            return False
        if usage.output_tokens and not self.prices_output:
            return False
        return self.prices_input or self.prices_output

    @classmethod
    def of(cls, model_price: ModelPrice) -> _Shape:
        keys = _priced_keys(model_price)
        token_keys = {key for key in keys if key.endswith("_mtok")}
        return cls(
            per_token_only=keys <= _PER_TOKEN_KEYS,
            prices_input=any(not key.startswith("output") for key in token_keys),
            prices_output=any(key.startswith("output") for key in token_keys),
        )


def _priced_keys(model_price: ModelPrice) -> frozenset[str]:
    return frozenset(key for key, value in vars(model_price).items() if value is not None and not key.startswith("_"))


def _per_token_cost(
    model_price: ModelPrice, input_tokens: int, cache_read: int, cache_write: int, output: int, source: str
) -> Cost:
    """The library's result for models priced per token only, without its general calculation.

    genai-prices' general calculation (a decomposition over its unit graph) takes ~0.2 ms a call,
    and accounting prices most events twice (cost and savings); this is that calculation for these
    prices, with the library's own tier arithmetic (`calc_unit_price`). A test checks both agree
    on every such model of the bundled data. A cache part without a price of its own is input.
    """
    read_price, write_price = model_price.cache_read_mtok, model_price.cache_write_mtok
    uncached = (
        input_tokens - (cache_read if read_price is not None else 0) - (cache_write if write_price is not None else 0)
    )
    uncached_part = calc_unit_price(model_price.input_mtok, uncached, input_tokens, _PER_MTOK)
    read_part = calc_unit_price(read_price, cache_read, input_tokens, _PER_MTOK)
    write_part = calc_unit_price(write_price, cache_write, input_tokens, _PER_MTOK)
    output_part = calc_unit_price(model_price.output_mtok, output, input_tokens, _PER_MTOK)
    return Cost(
        input=uncached_part,
        cached_input=read_part,
        cache_write=write_part,
        output=output_part,
        total=uncached_part + read_part + write_part + output_part,
        source=source,
    )


def _library_cost(
    model_price: ModelPrice, input_tokens: int, cache_read: int, cache_write: int, output: int, source: str
) -> Cost:
    """genai-prices' general calculation, its input total split into uncached, cache reads and writes."""
    tokens = Usage(
        input_tokens=input_tokens, cache_read_tokens=cache_read, cache_write_tokens=cache_write, output_tokens=output
    )
    calc = model_price.calc_price(tokens)
    # Tiers follow the request's whole input, as in the library; a part without a price of its own is input.
    cached = calc_unit_price(model_price.cache_read_mtok, cache_read, input_tokens, _PER_MTOK)
    written = calc_unit_price(model_price.cache_write_mtok, cache_write, input_tokens, _PER_MTOK)
    return Cost(
        input=calc["input_price"] - cached - written,
        cached_input=cached,
        cache_write=written,
        output=calc["output_price"],
        total=calc["total_price"],
        source=source,
    )


def _base(value: Decimal | TieredPrices | None, missing: Decimal) -> Decimal:
    """A price's first tier; `missing` when the model has no such price."""
    if value is None:
        return missing
    return value.base if isinstance(value, TieredPrices) else value


def library_version() -> str:
    """The installed genai-prices version: it names the bundled price data (for docs and /v1/models)."""
    return version(LIBRARY)


def price_source() -> str:
    """Where library prices come from, as shown to operators: "genai-prices 0.2.3"."""
    return f"{LIBRARY} {library_version()}"


class Prices:
    """Prices requests from operator overrides first, then genai-prices' bundled data."""

    def __init__(self, overrides: PriceOverrides | None = None) -> None:
        self._overrides = {key.lower(): o.model_price() for key, o in (overrides.root if overrides else {}).items()}
        self._source = price_source()
        # The bundled snapshot only: UpdatePrices (the library's fetcher) is never started.
        self._snapshot = data_snapshot.get_snapshot()
        self._library_providers = {p.id for p in self._snapshot.providers}
        # The shape of each ModelPrice met, by identity: the library's and the overrides' price
        # objects live as long as this instance and are never changed.
        self._shapes: dict[int, _Shape] = {}

    @classmethod
    def from_settings(cls, settings: PriceSettings) -> Prices:
        """Prices with the overrides of ORQEN_PRICES_FILE (read and checked with the settings)."""
        return cls(settings.price_overrides)

    def price(self, provider: str, model: str, usage: TokenCounts, at: datetime) -> Cost | None:
        """What `usage` of `model` at `provider` cost at time `at`; None when no price is known.

        A model priced in other units than tokens (audio hours, characters), or with no price for a
        direction of tokens it was used for, has no known price either.

        `model` may carry its provider prefix ("bedrock/amazon.nova-lite-v1:0"). Cache reads and
        writes are parts of `usage.input_tokens`; counts a provider over-reported are capped at it.
        """
        if min(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens, usage.cache_write_input_tokens) < 0:
            raise ValueError("token counts cannot be negative")
        provider = provider.lower()
        model = model.lower().removeprefix(provider + "/")
        found = self._model_price(provider, model, at)
        if found is None:
            return None
        model_price, source = found
        cache_read = min(usage.cached_input_tokens, usage.input_tokens)
        cache_write = min(usage.cache_write_input_tokens, usage.input_tokens - cache_read)
        counts = (usage.input_tokens, cache_read, cache_write, usage.output_tokens)
        shape = self._shape(model_price)
        if not shape.prices(usage):
            return None
        if shape.per_token_only:
            return _per_token_cost(model_price, *counts, source)
        return _library_cost(model_price, *counts, source)

    def list_price(self, provider: str, model: str, at: datetime) -> ListPrice | None:
        """`model`'s prices per 1M tokens at time `at` (the first tier of a tiered price); None when unknown."""
        provider = provider.lower()
        found = self._model_price(provider, model.lower().removeprefix(provider + "/"), at)
        if found is None:
            return None
        model_price, source = found
        shape = self._shape(model_price)
        if not (shape.prices_input or shape.prices_output):
            return None
        input_price = _base(model_price.input_mtok, Decimal(0))
        return ListPrice(
            input=input_price,
            output=_base(model_price.output_mtok, Decimal(0)),
            cached_input=_base(model_price.cache_read_mtok, input_price),
            cache_write=_base(model_price.cache_write_mtok, input_price),
            source=source,
        )

    def _shape(self, model_price: ModelPrice) -> _Shape:
        shape = self._shapes.get(id(model_price))
        if shape is None:
            shape = self._shapes[id(model_price)] = _Shape.of(model_price)
        return shape

    def context_window(self, provider: str, model: str) -> int | None:
        """`model`'s context window in tokens as the library gives it; None when it does not say."""
        provider = provider.lower()
        info = self._library_model(
            _LIBRARY_PROVIDER.get(provider, provider), model.lower().removeprefix(provider + "/")
        )
        return info.context_window if info is not None else None

    def _library_model(self, library_provider: str, model: str) -> ModelInfo | None:
        if library_provider not in self._library_providers:
            return None  # never the library's looser name matching: "my-anthropic-proxy" is not Anthropic
        try:
            _, info = self._snapshot.find_provider_model(model, None, library_provider, None)
        except LookupError:
            return None
        return info

    def _model_price(self, provider: str, model: str, at: datetime) -> tuple[ModelPrice, str] | None:
        override = self._overrides.get(f"{provider}/{model}") or self._overrides.get(f"{provider}/*")
        if override is not None:
            return override, "override"
        info = self._library_model(_LIBRARY_PROVIDER.get(provider, provider), model)
        return (info.get_prices(at), self._source) if info is not None else None
