"""The full garbage collections each service made during a run (`make bench ARGS=--gc`), read from the
`orqen_gc_pause_seconds` histogram each service exports, as an operator's Prometheus would."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from orqen_stack.config import DEFAULT_METRICS_PORTS, StackConfig


def metrics_urls(edge_url: str, config: StackConfig) -> dict[str, str]:
    """Each service's metrics URL in the stack `config` describes (the edge serves its own /metrics)."""
    urls = {"edge": edge_url + "/metrics"}
    urls.update((s, f"http://127.0.0.1:{config.metrics_port(s)}/metrics") for s in DEFAULT_METRICS_PORTS)
    return urls


@dataclass(frozen=True, slots=True)
class Pauses:
    """Full collections: how many, their total wall time, and the histogram bucket bound all of them were within."""

    count: int
    total_ms: float
    within_ms: float


def _full_collections(url: str) -> tuple[int, float, dict[float, float]]:
    """(count, sum in seconds, cumulative count per bucket bound) of generation 2, as the service reports them."""
    count, total, buckets = 0, 0.0, {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        if family.name != "orqen_gc_pause_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("generation") != "2":
                continue
            if sample.name.endswith("_count"):
                count = int(sample.value)
            elif sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
    return count, total, buckets


class FullCollections:
    """The full collections of each service (all its worker processes) from when this is made."""

    def __init__(self, urls: dict[str, str]) -> None:
        self._urls = urls
        self._before = {name: _full_collections(url) for name, url in urls.items()}

    def since(self) -> dict[str, Pauses]:
        """Each service's full collections since this was made."""
        found = {}
        for name, url in self._urls.items():
            (count, total, buckets), (count0, total0, buckets0) = _full_collections(url), self._before[name]
            made = count - count0
            within = min((le for le, n in buckets.items() if n - buckets0.get(le, 0) >= made), default=float("inf"))
            found[name] = Pauses(made, (total - total0) * 1000, within * 1000)
        return found


def summary(pauses: dict[str, Pauses]) -> str:
    """`  full gc edge 2 (1.8 ms in all, each ≤ 2 ms) …`, the services that made any."""
    made = {name: p for name, p in pauses.items() if p.count}
    if not made:
        return "  full gc none"
    return "  full gc " + " ".join(
        f"{name} {p.count} ({p.total_ms:.1f} ms in all, each ≤ {p.within_ms:g} ms)" for name, p in made.items()
    )
