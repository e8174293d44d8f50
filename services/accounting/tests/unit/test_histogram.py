"""Latency histograms: percentiles within half a bucket of the exact ones, and they add up."""

import random

import pytest

from orqen_accounting import histogram


def exact(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_are_within_a_bucket_of_the_exact_ones(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(5, 1.2) for _ in range(20_000)]  # median about 150 ms, long tail
    counts = histogram.counts((histogram.bucket_of(v), 1) for v in values)
    for share in (0.5, 0.95, 0.99):
        assert histogram.percentile(counts, share) == pytest.approx(exact(values, share), rel=0.09)


def test_every_latency_has_a_bucket() -> None:
    assert histogram.bucket_of(0.2) == 0 and histogram.bucket_of(1.0) == 1
    assert histogram.bucket_of(2_000_000.0) == histogram.BUCKETS - 1
    bounds = [histogram.percentile([0] * i + [1] + [0] * (histogram.BUCKETS - i - 1), 1.0) for i in range(10)]
    assert bounds == sorted(bounds)


def test_an_empty_histogram_has_no_latency() -> None:
    assert histogram.percentile(histogram.counts([]), 0.95) == 0.0
