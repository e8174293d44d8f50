"""The models an account can use now: its connected providers' own lists, each model profiled.

A provider is connected when the operator's environment configures it or the account saved a
credential for it; its list is read with the credentials a call to it would carry for the
account (orqen_dispatch.credentials.merge) and kept by `ModelListCache`. Each listed model
gets the model string a caller sends for it (bare when the router sends that bare name to this
provider, else `<provider>/<id>`) and its profile (orqen_dispatch.model_profiles).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from orqen.v1 import dispatch_pb2
from orqen_common.errors import OrqenError
from orqen_common.lru import Lru
from orqen_common.prices import Prices
from orqen_dispatch.account_config import AccountConfig
from orqen_dispatch.credentials import merge
from orqen_dispatch.latency import ModelStats
from orqen_dispatch.model_list_cache import ListsModels, ListSource, ModelListCache, ProviderList
from orqen_dispatch.model_profiles import ModelOverride, ModelProfile, profile
from orqen_dispatch.model_routing import ROUTING_STRINGS, routable
from orqen_dispatch.price_facts import price_facts
from orqen_dispatch.providers.model_lists import ListedModel
from orqen_dispatch.router import ProviderRouter

# Profiled lists kept in memory: a list is profiled once per copy, not per request.
_PROFILED_LISTS = 1024


@dataclass(frozen=True, slots=True)
class Availability:
    """An account's listed models (every kind) and how fresh each provider's list is."""

    models: tuple[ModelProfile, ...]
    lists: tuple[ProviderList, ...]


class AvailableModels:
    """Builds an account's `Availability` from the cached provider lists."""

    def __init__(
        self,
        router: ProviderRouter,
        lists: ModelListCache,
        operator_providers: Collection[str],
        prices: Prices,
        overrides: Mapping[str, ModelOverride],
    ) -> None:
        """`overrides`: the operator's per-model settings, by model string or provider model id."""
        self._router = router
        self._lists = lists
        self._operator_providers = frozenset(operator_providers)
        self._prices = prices
        self._overrides = overrides
        # (provider, fetched_at, its models, the account's saved providers) -> the profiles.
        self._profiled: Lru[tuple[str, float, tuple[ListedModel, ...], frozenset[str]], tuple[ModelProfile, ...]] = Lru(
            _PROFILED_LISTS
        )

    def connected(self, config: AccountConfig) -> frozenset[str]:
        """The providers the account can call: the operator's and those it saved credentials for."""
        return self._operator_providers | config.credentials.keys()

    async def of(self, config: AccountConfig) -> Availability:
        """The account's models, read from each connected provider's (cached) list."""
        saved = config.credentials
        sources: list[ListSource] = []
        for name in sorted(self.connected(config)):
            provider = self._router.named(name, saved.keys())
            if isinstance(provider, ListsModels):
                sources.append(ListSource(provider, merge({}, saved.get(name), name, None)))
        lists = await self._lists.lists(sources)
        profiles: list[ModelProfile] = []
        for listed in lists:
            key = (listed.provider, listed.fetched_at, listed.models, frozenset(saved))
            profiled = self._profiled.get(key)
            if profiled is None:
                # Off the event loop: a model the price library has not seen costs it a scan.
                profiled = await asyncio.to_thread(self._profile, listed, key[3])
                self._profiled.put(key, profiled)
            profiles += profiled
        return Availability(tuple(profiles), tuple(lists))

    def _profile(self, listed: ProviderList, saved: Collection[str]) -> tuple[ModelProfile, ...]:
        profiles = []
        for model in listed.models:
            name = self._model_string(listed.provider, model.id, saved)
            override = self._overrides.get(name) or self._overrides.get(model.id)
            facts = price_facts(self._prices, listed.provider, model.id)
            profiles.append(profile(name, listed.provider, model, int(listed.fetched_at), facts, override))
        return tuple(profiles)

    def _model_string(self, provider: str, model_id: str, saved: Collection[str]) -> str:
        """The string a caller sends for `model_id` of `provider`: the bare id when it routes there."""
        try:
            routed = self._router.resolve(model_id, saved)[0].name
        except OrqenError:  # an id the router cannot take bare ("x/"): address it by provider
            routed = ""
        return model_id if routed == provider else f"{provider}/{model_id}"


def model_infos(
    available: Availability, disabled: Collection[str], stats: Mapping[str, ModelStats]
) -> list[dispatch_pb2.ModelInfo]:
    """GET /v1/models: every listed model (all kinds) of the connected providers, then the routing strings."""
    infos = []
    for m in available.models:
        measured = stats.get(m.model) or ModelStats()
        infos.append(
            dispatch_pb2.ModelInfo(
                id=m.model,
                provider=m.provider,
                enabled=m.model not in disabled,
                tier=m.tier if m.kind == "chat" else "",
                input_price=m.input,
                output_price=m.output,
                cached_input_price=m.cached_input_price,
                latency_p50_ms=measured.latency_ms,
                success_rate=measured.success_rate,
                calls=measured.calls,
                kind=m.kind,
                context_window=m.context_window,
                max_output_tokens=m.max_output_tokens,
                tools=m.tools,
                vision=m.vision,
                capability=m.capability if m.kind == "chat" else 0,
                listed_at=m.listed_at,
                created=m.created,
                capabilities_source=m.sources,
                priced=m.priced,
            )
        )
    can_route = bool(routable(available.models, disabled))
    infos.extend(
        dispatch_pb2.ModelInfo(id=s, provider="orqen", enabled=can_route, kind="router") for s in ROUTING_STRINGS
    )
    return infos


def list_statuses(available: Availability) -> list[dispatch_pb2.ProviderModelList]:
    """How fresh each connected provider's list is (ListModelsResponse.provider_lists)."""
    return [
        dispatch_pb2.ProviderModelList(
            provider=p.provider,
            fetched_at=int(p.fetched_at),
            age_seconds=round(p.age_seconds, 1),
            status=p.status,
            error=p.error,
            models=len(p.models),
        )
        for p in available.lists
    ]
