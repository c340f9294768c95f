"""The mergeable latency sketch: counts in log-spaced buckets.

Bucket b (1-based, as pgvector indexes a sparsevec) holds latencies x with
    b = clamp(ceil(ln(x / MIN_MS) / ln(GAMMA)) + 1, 1, BUCKETS)
so bucket b >= 2 covers (MIN_MS * GAMMA^(b-2), MIN_MS * GAMMA^(b-1)]. Its representative
value 2 * MIN_MS * GAMMA^(b-1) / (1 + GAMMA) is within RELATIVE_ERROR of every latency
in it, so a quantile read from merged sketches is within RELATIVE_ERROR (0.89 %) of the
exact `percentile_disc` of the same requests, for latencies between MIN_MS and
MAX_EXACT_MS. A quantile that falls in the first bucket (<= MIN_MS) is answered with
the window's exact minimum, one in the last bucket with its exact maximum.

Merging is adding counts, so any set of rollup rows merges exactly: PostgreSQL sums
the sketches (pgvector `sum(vector)`, in C) and this module reads quantiles from the
sum. The same bucket formula is the SQL function `apm_sketch_index` (migration 0003), and
the same quantile reading is `apm_sketch_quantile` (0009); their constants are frozen in
those migrations, and tests check that they agree with this module.
"""

from __future__ import annotations

import math

import numpy as np

GAMMA = 1.018
LN_GAMMA = math.log(GAMMA)
MIN_MS = 0.01
BUCKETS = 1024
RELATIVE_ERROR = (GAMMA - 1) / (GAMMA + 1)
MAX_EXACT_MS = MIN_MS * GAMMA ** (BUCKETS - 2)

# Representative latency of each bucket, index 0 = bucket 1.
_REPRESENTATIVES = np.array(
    [MIN_MS] + [2 * MIN_MS * GAMMA ** (b - 1) / (1 + GAMMA) for b in range(2, BUCKETS + 1)]
)


def bucket_of(latency_ms: float) -> int:
    """The 1-based bucket of a latency (mirrors SQL apm_sketch_index)."""
    if latency_ms <= MIN_MS:
        return 1
    return min(BUCKETS, max(1, math.ceil(math.log(latency_ms / MIN_MS) / LN_GAMMA) + 1))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """The latencies (low, high] a 1-based bucket holds; the first holds (0, MIN_MS], the
    last everything above MAX_EXACT_MS (its high bound is given as twice that)."""
    if bucket <= 1:
        return 0.0, MIN_MS
    if bucket >= BUCKETS:
        return MAX_EXACT_MS, 2 * MAX_EXACT_MS
    return MIN_MS * GAMMA ** (bucket - 2), MIN_MS * GAMMA ** (bucket - 1)


def quantiles(counts, qs: tuple[float, ...], low: float, high: float) -> list[float | None]:
    """Quantiles (percentile_disc semantics) of merged bucket counts.

    `counts` has BUCKETS entries; `low`/`high` are the exact min and max of the same
    requests, to which answers are clamped. None when there are no requests.
    """
    return quantiles_of_many([counts], qs, [low], [high])[0]


def quantiles_of_many(counts, qs: tuple[float, ...], lows, highs) -> list[list[float | None]]:
    """quantiles() of many sketches at once (a time series: one per bucket), in a few
    array operations instead of a Python loop per point."""
    cumulative = np.cumsum(np.asarray(counts, dtype=np.float64), axis=1)
    totals = cumulative[:, -1]
    # percentile_disc(q): the first value whose cumulative count reaches ceil(q * N).
    # The epsilons keep float sums of integer counts from missing an exact tie.
    ranks = np.maximum(np.ceil(np.outer(totals, qs) - 1e-9), 1) - 1e-6
    # Per quantile, the first bucket reaching the rank (argmax of a boolean row; rows
    # that never reach it have no requests and are answered None below).
    indexes = np.stack(
        [np.argmax(cumulative >= ranks[:, [j]], axis=1) for j in range(len(qs))], axis=1
    )
    lows = np.asarray([np.nan if v is None else v for v in lows], dtype=np.float64)[:, None]
    highs = np.asarray([np.nan if v is None else v for v in highs], dtype=np.float64)[:, None]
    values = np.clip(_REPRESENTATIVES[indexes], lows, highs)
    # Everything <= MIN_MS: the exact minimum is closest; above MAX_EXACT_MS: the maximum.
    values = np.where(indexes == 0, lows, np.where(indexes == BUCKETS - 1, highs, values))
    return [
        [float(v) for v in row] if total > 0 else [None] * len(qs)
        for row, total in zip(values, totals, strict=True)
    ]
