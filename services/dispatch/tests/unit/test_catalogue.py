"""The packaged catalogue loads and is consistent with the router."""

import tomllib
from datetime import date
from pathlib import Path

import pydantic
import pytest

from orqen_common.catalogue import TIERS, Catalogue, CatalogueEntry, load_catalogue
from orqen_dispatch.router import ProviderRouter

PROVIDERS = ("openai", "anthropic", "bedrock", "groq")


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


ROUTER = ProviderRouter({name: Named(name) for name in PROVIDERS}, "openai")  # type: ignore[misc]
CATALOGUE = load_catalogue()


def entry(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "model": "m",
        "provider": "openai",
        "tier": "fast",
        "capability": 5,
        "context_window": 1000,
        "input": 1.0,
        "output": 2.0,
    }
    return base | fields


def catalogue_json(*entries: dict[str, object]) -> str:
    return pydantic.TypeAdapter(dict[str, object]).dump_json({"prices_as_of": "2025-12-01", "models": entries}).decode()


def test_the_packaged_catalogue_loads_once_with_its_date() -> None:
    assert load_catalogue() is CATALOGUE
    assert date.fromisoformat(CATALOGUE.prices_as_of) <= date.today()
    assert len(CATALOGUE.entries) >= 10


def test_the_catalogue_file_is_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[3] / "common" / "pyproject.toml").read_text())
    assert "catalogue.json" in pyproject["tool"]["setuptools"]["package-data"]["orqen_common"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_provider_orqen_speaks_has_models_and_a_fast_tier(provider: str) -> None:
    mine = [e for e in CATALOGUE.entries if e.provider == provider]
    assert mine
    assert any(e.tier == "fast" and not e.legacy for e in mine)


def test_every_model_string_reaches_its_own_provider_with_the_name_it_expects() -> None:
    for e in CATALOGUE.entries:
        provider, upstream = ROUTER.resolve(e.model)
        assert provider.name == e.provider, e.model
        assert upstream == e.model.removeprefix(f"{e.provider}/"), e.model


def test_prices_are_plausible_list_prices() -> None:
    for e in CATALOGUE.entries:
        assert e.provider in PROVIDERS and e.tier in TIERS
        assert 0 < e.input <= e.output <= 100, e.model  # output never cheaper than input; no typo'd zeros
        assert e.cached_input_price <= e.input
        assert e.context_window >= 100_000


def test_known_list_prices() -> None:
    # A few anchors from the providers' pricing pages, to catch a shifted column.
    expected = {
        "gpt-4o-mini": (0.15, 0.6, 0.075),
        "gpt-4.1": (2.0, 8.0, 0.5),
        "claude-haiku-4-5": (1.0, 5.0, 0.1),
        "bedrock/amazon.nova-micro-v1:0": (0.035, 0.14, 0.00875),
        "groq/llama-3.3-70b-versatile": (0.59, 0.79, 0.59),
    }
    for model, prices in expected.items():
        e = CATALOGUE.get(model)
        assert e is not None and (e.input, e.output, e.cached_input_price) == prices


def test_lookup_by_model_alias_and_provider_prefix() -> None:
    gpt = CATALOGUE.get("gpt-4o-mini")
    assert gpt is not None
    assert CATALOGUE.get("openai/gpt-4o-mini") is gpt
    assert CATALOGUE.get("gpt-4o-mini-2024-07-18") is gpt
    haiku = CATALOGUE.get("claude-haiku-4-5-20251001")
    assert haiku is not None and haiku.model == "claude-haiku-4-5"
    assert CATALOGUE.get("anthropic/claude-haiku-4-5") is haiku
    nova = CATALOGUE.get("bedrock/amazon.nova-lite-v1:0")
    assert nova is not None and CATALOGUE.get("bedrock/bedrock/amazon.nova-lite-v1:0") is None
    assert CATALOGUE.get("no-such-model") is None
    assert CATALOGUE.get("gpt-4o-2024-05-13") is None  # other prices: not an alias


def test_a_small_catalogue_parses() -> None:
    small = Catalogue.parse(catalogue_json(entry(model="a", cached_input=0.5), entry(model="b", provider="groq")))
    assert [e.model for e in small.entries] == ["a", "b"]
    assert small.prices_as_of == "2025-12-01"
    a = small.get("a")
    assert a is not None and a.blended_price == pytest.approx((3 * 1.0 + 2.0) / 4)
    assert small.get("groq/b") is small.get("b")


@pytest.mark.parametrize(
    "bad",
    [
        [entry(tier="quick")],
        [entry(capability=11)],
        [entry(capability=0)],
        [entry(input=-1)],
        [entry(cached_input=2.0)],
        [entry(context_window=0)],
        [entry(colour="red")],
        [entry(model="")],
        [],
    ],
)
def test_invalid_entries_are_refused(bad: list[dict[str, object]]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Catalogue.parse(catalogue_json(*bad))


def test_a_name_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="names both"):
        Catalogue.parse(catalogue_json(entry(model="a"), entry(model="a")))
    with pytest.raises(ValueError, match="names both"):
        Catalogue.parse(catalogue_json(entry(model="a"), entry(model="b", aliases=["a"])))


def test_a_bad_date_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        Catalogue.parse('{"prices_as_of": "last week", "models": [{"model": "a"}]}')


def test_entries_are_immutable() -> None:
    e = CatalogueEntry.model_validate(entry())
    with pytest.raises(pydantic.ValidationError):
        e.input = 0.0  # type: ignore[misc]
