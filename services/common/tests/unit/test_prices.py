"""Prices from genai-prices' bundled data, operator overrides, and the unknown-price path."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

import pytest
from genai_prices import data_snapshot
from genai_prices.types import ModelPrice

from orqen.v1 import common_pb2
from orqen_common.prices import (
    _PER_TOKEN_KEYS,
    Cost,
    ListPrice,
    PriceOverrides,
    Prices,
    PriceSettings,
    _library_cost,
    _per_token_cost,
    _priced_keys,
    library_version,
    price_source,
)
from orqen_common.settings import load_settings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MTOK = 1_000_000


def usage(input_tokens: int = 0, output: int = 0, cached: int = 0, written: int = 0) -> common_pb2.Usage:
    return common_pb2.Usage(
        input_tokens=input_tokens, output_tokens=output, cached_input_tokens=cached, cache_write_input_tokens=written
    )


def overrides(raw: str) -> PriceOverrides:
    return PriceOverrides.model_validate_json(raw)


def test_the_library_prices_input_and_output_per_million_tokens() -> None:
    cost = Prices().price("openai", "gpt-4o-mini", usage(MTOK, MTOK), NOW)
    assert cost is not None
    assert (cost.input, cost.output, cost.total) == (Decimal("0.15"), Decimal("0.6"), Decimal("0.75"))
    assert cost.cached_input == cost.cache_write == 0
    assert cost.source == f"genai-prices {version('genai-prices')}"


def test_cache_reads_and_writes_have_prices_of_their_own() -> None:
    # Anthropic's claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write (5 min), $5 output.
    cost = Prices().price("anthropic", "claude-haiku-4-5", usage(3 * MTOK, MTOK, cached=MTOK, written=MTOK), NOW)
    assert cost == Cost(
        input=Decimal("1"),
        cached_input=Decimal("0.1"),
        cache_write=Decimal("1.25"),
        output=Decimal("5"),
        total=Decimal("7.35"),
        source=price_source(),
    )


def test_a_long_context_request_pays_the_higher_tier_on_all_its_tokens() -> None:
    # claude-sonnet-4-5 doubles its input price above 200k input tokens (the providers' cliff model).
    short = Prices().price("anthropic", "claude-sonnet-4-5", usage(200_000), NOW)
    long = Prices().price("anthropic", "claude-sonnet-4-5", usage(200_001), NOW)
    assert short is not None and long is not None
    assert short.input == Decimal("0.6")
    assert long.input == Decimal("6") * 200_001 / MTOK


def test_bedrock_and_provider_prefixed_model_strings_are_priced() -> None:
    prices = Prices()
    nova = prices.price("bedrock", "bedrock/amazon.nova-lite-v1:0", usage(MTOK, MTOK), NOW)
    sonnet = prices.price("bedrock", "anthropic.claude-sonnet-4-6", usage(MTOK), NOW)
    groq = prices.price("groq", "groq/llama-3.1-8b-instant", usage(MTOK, MTOK), NOW)
    assert nova is not None and nova.total == Decimal("0.30")
    assert sonnet is not None and sonnet.input > 0
    assert groq is not None and groq.total == Decimal("0.13")


def test_an_unknown_model_or_provider_has_no_price() -> None:
    prices = Prices()
    assert prices.price("openai", "my-finetune-that-does-not-exist", usage(10, 10), NOW) is None
    assert prices.price("my-vllm", "llama-3.1-8b-instant", usage(10, 10), NOW) is None
    # The library's loose provider matching would take this for Anthropic; Orqen does not.
    assert prices.price("my-anthropic-proxy", "claude-haiku-4-5", usage(10, 10), NOW) is None


def test_an_override_wins_over_the_library_and_prices_custom_providers() -> None:
    prices = Prices(
        overrides(
            '{"openai/gpt-4o-mini": {"input": 1, "output": 2, "cached_input": "0.5"},'
            ' "my-vllm/*": {"input": 0, "output": 0},'
            ' "my-vllm/big": {"input": 3, "output": 4}}'
        )
    )
    mini = prices.price("openai", "GPT-4o-mini", usage(MTOK, MTOK, cached=MTOK // 2), NOW)
    assert mini == Cost(Decimal("0.5"), Decimal("0.25"), Decimal(0), Decimal("2"), Decimal("2.75"), "override")
    free = prices.price("my-vllm", "my-vllm/anything", usage(MTOK, MTOK), NOW)
    assert free is not None and free.total == 0 and free.source == "override"
    big = prices.price("my-vllm", "big", usage(MTOK, MTOK), NOW)
    assert big is not None and big.total == Decimal("7")
    # Models the file does not name keep the library's prices.
    other = prices.price("openai", "gpt-4o", usage(MTOK), NOW)
    assert other is not None and other.source == price_source()


def test_an_override_without_cache_prices_charges_cache_tokens_as_input() -> None:
    prices = Prices(overrides('{"acme/m": {"input": 2, "output": 0}}'))
    cost = prices.price("acme", "m", usage(MTOK, cached=MTOK // 4, written=MTOK // 4), NOW)
    assert cost is not None
    assert (cost.input, cost.cached_input, cost.cache_write, cost.total) == (Decimal(2), 0, 0, Decimal(2))


def test_an_override_can_be_tiered() -> None:
    prices = Prices(
        overrides('{"acme/long": {"input": {"base": 1, "tiers": [{"start": 1000, "price": 2}]}, "output": 1}}')
    )
    below, above = (prices.price("acme", "long", usage(n), NOW) for n in (1000, 1001))
    assert below is not None and below.input == Decimal("0.001")
    assert above is not None and above.input == Decimal("0.002002")


@pytest.mark.parametrize(
    "raw",
    [
        '{"gpt-4o": {"input": 1, "output": 1}}',  # no provider
        '{"openai/": {"input": 1, "output": 1}}',
        '{"openai/gpt-4o": {"input": -1, "output": 1}}',
        '{"openai/gpt-4o": {"input": 1}}',  # no output price
        '{"openai/gpt-4o": {"input": 1, "output": 1, "batch": 0.5}}',
        '{"openai/gpt-4o": {"input": {"base": 1, "tiers": []}, "output": 1}}',
        '{"openai/gpt-4o": {"input": "NaN", "output": 1}}',
    ],
)
def test_a_bad_override_file_is_refused_at_start_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(raw)
    monkeypatch.setenv("ORQEN_PRICES_FILE", str(path))
    with pytest.raises(SystemExit, match=r"refusing to start(.|\n)*ORQEN_PRICES_FILE .*prices\.json: "):
        load_settings(PriceSettings)


def test_the_override_file_is_read_from_orqen_prices_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"acme/m": {"input": 1, "output": 1}}')
    monkeypatch.setenv("ORQEN_PRICES_FILE", str(path))
    cost = Prices.from_settings(load_settings(PriceSettings)).price("acme", "m", usage(MTOK), NOW)
    assert cost is not None and cost.total == 1
    monkeypatch.setenv("ORQEN_PRICES_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(SystemExit, match=r"cannot read .*missing\.json: No such file"):
        load_settings(PriceSettings)
    monkeypatch.delenv("ORQEN_PRICES_FILE")
    assert Prices.from_settings(load_settings(PriceSettings)).price("acme", "m", usage(MTOK), NOW) is None


def test_over_reported_cache_counts_are_capped_at_the_input() -> None:
    cost = Prices().price("anthropic", "claude-haiku-4-5", usage(100, cached=150, written=50), NOW)
    assert cost is not None and cost.cached_input == Decimal("0.00001") and cost.input == 0
    with pytest.raises(ValueError):
        Prices().price("anthropic", "claude-haiku-4-5", usage(-1), NOW)


def test_pricing_never_uses_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    prices = Prices()
    for provider, model in [
        ("openai", "gpt-5"),
        ("anthropic", "claude-sonnet-4-6"),
        ("bedrock", "amazon.nova-pro-v1:0"),
    ]:
        assert prices.price(provider, model, usage(1000, 100), NOW) is not None
    assert prices.price("openai", "unknown-model", usage(1000, 100), NOW) is None


def test_the_price_source_names_the_pinned_library_version() -> None:
    pinned = next(
        line.split("==")[1].strip()
        for line in (Path(__file__).resolve().parents[4] / "constraints.txt").read_text().splitlines()
        if line.lower().startswith("genai-prices==")
    )
    assert library_version() == pinned
    assert price_source() == f"genai-prices {pinned}"


def test_the_example_file_of_the_configuration_reference_is_valid() -> None:
    reference = (Path(__file__).resolve().parents[4] / "docs" / "configuration.md").read_text()
    example = reference.split("## Prices", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    prices = Prices(PriceOverrides.model_validate_json(example))
    cost = prices.price("my-vllm", "llama-3.1-70b", usage(MTOK, MTOK), NOW)
    assert cost is not None and cost.total == Decimal("0.4")


def test_list_prices_are_per_million_tokens_below_any_tier_and_unknown_is_none() -> None:
    prices = Prices(overrides('{"acme/free-cache": {"input": 1, "output": 2, "cached_input": 0}}'))
    sonnet = prices.list_price("anthropic", "anthropic/claude-sonnet-4-5", NOW)
    assert sonnet == ListPrice(Decimal(3), Decimal(15), Decimal("0.3"), Decimal("3.75"), price_source())
    mini = prices.list_price("openai", "gpt-4o-mini", NOW)
    assert mini is not None and mini.cache_write == mini.input == Decimal("0.15")  # no write price: input
    free = prices.list_price("acme", "free-cache", NOW)
    assert free == ListPrice(Decimal(1), Decimal(2), Decimal(0), Decimal(1), "override")
    assert prices.list_price("openai", "no-such-model", NOW) is None


def _bundled_model_prices() -> list[tuple[str, ModelPrice]]:
    found = []
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            listed = [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
            found += [(f"{provider.id}/{model.id}", price) for price in listed]
    return found


@pytest.mark.parametrize(
    "counts",
    [(0, 0, 0, 0), (1000, 0, 0, 200), (1000, 400, 300, 200), (250_000, 50_000, 20_000, 8000), (3_000_000, 0, 7, 1)],
)
def test_the_per_token_arithmetic_gives_the_librarys_result_for_every_model_it_serves(
    counts: tuple[int, int, int, int],
) -> None:
    served = [(name, price) for name, price in _bundled_model_prices() if _priced_keys(price) <= _PER_TOKEN_KEYS]
    assert len(served) > 2000  # most of the bundled data: the check below covers real prices
    for name, price in served:
        assert _per_token_cost(price, *counts, "s") == _library_cost(price, *counts, "s"), name


def test_prices_of_other_units_go_through_the_librarys_calculation() -> None:
    # A per-request fee is a part of the price the per-token arithmetic does not cover.
    fee = ModelPrice(input_mtok=Decimal(1), output_mtok=Decimal(1), requests_kcount=Decimal(5))
    assert not _priced_keys(fee) <= _PER_TOKEN_KEYS
    prices = Prices()
    prices._overrides["acme/fee"] = fee  # overrides take token prices only: plant one as the library has them
    cost = prices.price("acme", "fee", usage(MTOK, 0), NOW)
    assert cost is not None and cost.total == Decimal("1.005") and cost.input == Decimal(1)


def test_a_model_priced_in_other_units_than_tokens_has_no_known_price_from_tokens() -> None:
    prices = Prices()
    # whisper-1 is priced per audio hour, tts-1 per million characters: tokens, or none, cannot price them.
    assert prices.price("openai", "whisper-1", usage(), NOW) is None
    assert prices.price("openai", "tts-1", usage(1000), NOW) is None
    # An embedding model prices input only, which is all it is used for.
    embedding = prices.price("openai", "text-embedding-3-small", usage(MTOK), NOW)
    assert embedding is not None and embedding.total == Decimal("0.02")
    assert prices.price("openai", "text-embedding-3-small", usage(MTOK, 10), NOW) is None


def test_every_bundled_model_prices_any_usage_without_an_error() -> None:
    prices = Prices()
    providers = {"aws": "bedrock"}  # the library's ids as Orqen names its providers
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            for counts in [(), (1000, 200), (300_000, 1000, 50_000, 20_000), (0, 50)]:
                cost = prices.price(providers.get(provider.id, provider.id), model.id, usage(*counts), NOW)
                assert cost is None or cost.total >= 0, (provider.id, model.id)
