"""Latency histograms that add up: percentiles of any period from daily rollups.

Exact percentiles would need every raw latency; counts per fixed log-scale bucket (the
latency_daily table) add up across days, models and providers and still give percentiles
within half a bucket: bucket i > 0 holds [2^((i-1)/8), 2^(i/8)) ms, each 9% wider
than the last, up to about 17 minutes; bucket 0 holds everything under 1 ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

STEPS_PER_DOUBLING = 8
BUCKETS = 1 + 20 * STEPS_PER_DOUBLING  # up to 2^20 ms; slower requests land in the last bucket


def bucket_of(ms: float) -> int:
    if ms < 1.0:
        return 0
    return min(BUCKETS - 1, 1 + int(math.log2(ms) * STEPS_PER_DOUBLING))


def sql_bucket(column: str) -> str:
    """`bucket_of` as a SQL expression over a double precision column (rollups are built by Postgres)."""
    return (
        f"CASE WHEN {column} < 1 THEN 0 "
        f"ELSE least({BUCKETS - 1}, 1 + floor(ln({column}) / ln(2) * {STEPS_PER_DOUBLING}))::smallint END"
    )


def _bounds(index: int) -> tuple[float, float]:
    if index == 0:
        return 0.0, 1.0
    return 2 ** ((index - 1) / STEPS_PER_DOUBLING), 2 ** (index / STEPS_PER_DOUBLING)


def counts(buckets: Iterable[tuple[int, int]]) -> list[int]:
    """A histogram from (bucket, requests) pairs, such as latency_daily rows summed by bucket."""
    histogram = [0] * BUCKETS
    for bucket, requests in buckets:
        histogram[min(bucket, BUCKETS - 1)] += requests
    return histogram


def percentile(histogram: Sequence[int], share: float) -> float:
    """The latency below which `share` (0..1) of the requests fell, interpolated inside its bucket."""
    total = sum(histogram)
    if total == 0:
        return 0.0
    rank = share * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low, high = _bounds(index)
            return low + (high - low) * max(0.0, rank - seen) / count
        seen += count
    return _bounds(len(histogram) - 1)[1]
