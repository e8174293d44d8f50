"""The garbage collections each service made during a run (`make bench ARGS=--gc`), read from the
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
    """A service's collections: the full ones (how many, their total wall time, the histogram bucket bound all
    of them were within), and the young ones (generations 0 and 1: how many, their total wall time)."""

    count: int
    total_ms: float
    within_ms: float
    young: int
    young_ms: float


@dataclass(frozen=True, slots=True)
class _Read:
    """One reading of a service's histogram: per generation the count and the sum in seconds; generation 2's
    cumulative count per bucket bound."""

    counts: dict[str, int]
    sums: dict[str, float]
    buckets: dict[float, float]


def _read(url: str) -> _Read:
    read = _Read({}, {}, {})
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        if family.name != "orqen_gc_pause_seconds":
            continue
        for sample in family.samples:
            generation = sample.labels.get("generation", "")
            if sample.name.endswith("_count"):
                read.counts[generation] = int(sample.value)
            elif sample.name.endswith("_sum"):
                read.sums[generation] = sample.value
            elif sample.name.endswith("_bucket") and generation == "2":
                read.buckets[float(sample.labels["le"])] = sample.value
    return read


class Collections:
    """The collections of each service (all its worker processes) from when this is made."""

    def __init__(self, urls: dict[str, str]) -> None:
        self._urls = urls
        self._before = {name: _read(url) for name, url in urls.items()}

    def since(self) -> dict[str, Pauses]:
        """Each service's collections since this was made."""
        found = {}
        for name, url in self._urls.items():
            now, then = _read(url), self._before[name]
            full = _made(now, then, "2")
            fresh = {le: n - then.buckets.get(le, 0) for le, n in now.buckets.items()}
            within = min((le for le, n in fresh.items() if n >= full), default=float("inf"))
            young = _made(now, then, "0") + _made(now, then, "1")
            young_ms = _took_ms(now, then, "0") + _took_ms(now, then, "1")
            found[name] = Pauses(full, _took_ms(now, then, "2"), within * 1000, young, young_ms)
        return found


def _made(now: _Read, then: _Read, generation: str) -> int:
    return now.counts.get(generation, 0) - then.counts.get(generation, 0)


def _took_ms(now: _Read, then: _Read, generation: str) -> float:
    return (now.sums.get(generation, 0.0) - then.sums.get(generation, 0.0)) * 1000


def summary(pauses: dict[str, Pauses], requests: int) -> str:
    """`  young gc µs/req edge 31.2 dispatch 8.1 …  full gc edge 2 (1.8 ms in all, each ≤ 2 ms) …`.

    The young collections' wall time per request of the run, for the services that made any; the full
    collections, for the services that made any."""
    young = {name: p.young_ms * 1000 / requests for name, p in pauses.items() if p.young}
    line = "  young gc us/req " + (" ".join(f"{name} {us:.1f}" for name, us in young.items()) or "none")
    made = {name: p for name, p in pauses.items() if p.count}
    full = " ".join(
        f"{name} {p.count} ({p.total_ms:.1f} ms in all, each ≤ {p.within_ms:g} ms)" for name, p in made.items()
    )
    return f"{line}  full gc {full or 'none'}"
