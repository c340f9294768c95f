"""The latency sketch: Python and SQL agree, and quantiles stay within the bound."""

import math
import random

import numpy as np
import pytest
from django.db import connection

from observability.analytics import sketch
from observability.analytics.queries import plan
from observability.tests.analytics_data import bimodal, lognormal, percentile_disc


def test_the_documented_error_bound_is_below_one_percent():
    assert sketch.RELATIVE_ERROR < 0.0090
    assert sketch.MAX_EXACT_MS > 10 * 60 * 1000  # ten minutes


@pytest.mark.django_db
def test_sql_and_python_put_every_latency_in_the_same_bucket():
    rng = random.Random(5)
    values = [0.0, 0.005, 0.01, 0.0100001, 1.0, 300.0, 86_400_000.0, sketch.MAX_EXACT_MS * 2]
    # Exact bucket boundaries are where rounding would differ, if it did.
    values += [sketch.MIN_MS * sketch.GAMMA**k for k in range(0, 1100, 7)]
    values += [rng.lognormvariate(3, 3) for _ in range(3000)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT apm_sketch_index(v) FROM unnest(%s::float8[]) AS v", [values])
        in_sql = [row[0] for row in cursor.fetchall()]

    assert in_sql == [sketch.bucket_of(v) for v in values]


@pytest.mark.django_db
def test_the_one_aggregate_sketch_equals_the_two_level_raw_form(project):
    """apm_sketch_of(array_agg(...)) builds the TimescaleDB continuous aggregates; the
    portable backend and the queries use the two-level form. Both give the same sketch."""
    from datetime import UTC, datetime, timedelta

    from observability.tests.analytics_data import generate

    now = datetime.now(UTC)
    generate(project, now - timedelta(hours=2), now, 3000, seed=9)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT apm_sketch_of(array_agg(apm_sketch_index(latency_ms)))::text "
            "FROM api_request WHERE project_id = %s",
            [project.pk],
        )
        aggregate = cursor.fetchone()[0]
        cursor.execute(
            "SELECT format('{%%s}/1024', string_agg(b || ':' || n, ',' ORDER BY b))"
            "::sparsevec::text FROM (SELECT apm_sketch_index(latency_ms) b, count(*) n "
            "FROM api_request WHERE project_id = %s GROUP BY 1) t",
            [project.pk],
        )
        two_level = cursor.fetchone()[0]

    assert aggregate == two_level


def sketch_of(values):
    counts = np.zeros(sketch.BUCKETS)
    for value in values:
        counts[sketch.bucket_of(value) - 1] += 1
    return counts


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: lognormal(r, 120, 0.9),
        bimodal,
        lambda r: r.uniform(0.5, 5000),
        lambda r: r.expovariate(1 / 50),
    ],
    ids=["lognormal", "bimodal", "uniform", "exponential"],
)
def test_quantiles_are_within_the_relative_error_of_percentile_disc(draw):
    rng = random.Random(3)
    values = [draw(rng) for _ in range(20000)]
    counts = sketch_of(values)

    estimates = sketch.quantiles(counts, (0.5, 0.9, 0.95, 0.99, 0.999), min(values), max(values))

    for q, estimate in zip((0.5, 0.9, 0.95, 0.99, 0.999), estimates, strict=True):
        exact = percentile_disc(values, q)
        assert abs(estimate - exact) / exact <= sketch.RELATIVE_ERROR + 1e-12, q


def test_merging_sketches_is_adding_counts():
    rng = random.Random(4)
    a = [lognormal(rng, 20, 0.5) for _ in range(500)]
    b = [lognormal(rng, 900, 0.5) for _ in range(500)]

    merged = sketch.quantiles(sketch_of(a) + sketch_of(b), (0.5, 0.99), min(a + b), max(a + b))
    whole = sketch.quantiles(sketch_of(a + b), (0.5, 0.99), min(a + b), max(a + b))

    assert merged == whole


def test_many_sketches_at_once_read_as_each_alone():
    """A time series reads all its points' quantiles in one call (quantiles_of_many)."""
    rng = random.Random(5)
    series = [[lognormal(rng, rng.uniform(5, 500), 0.8) for _ in range(rng.randint(0, 300))]
              for _ in range(40)]  # fmt: skip
    counts = [sketch_of(values) for values in series]
    lows = [min(values, default=None) for values in series]
    highs = [max(values, default=None) for values in series]
    qs = (0.5, 0.95, 0.99)

    together = sketch.quantiles_of_many(counts, qs, lows, highs)

    for values, answer in zip(series, together, strict=True):
        expected = [percentile_disc(values, q) for q in qs] if values else [None] * 3
        if values:
            assert all(abs(a - e) / e <= sketch.RELATIVE_ERROR + 1e-12
                       for a, e in zip(answer, expected, strict=True))  # fmt: skip
        else:
            assert answer == expected


def test_no_requests_no_quantiles():
    assert sketch.quantiles(np.zeros(sketch.BUCKETS), (0.5,), 0, 0) == [None]


def test_extremes_are_clamped_to_the_exact_min_and_max():
    counts = sketch_of([0.001, 0.002, 10**9])

    low, high = sketch.quantiles(counts, (0.01, 1.0), 0.001, 10**9)

    assert (low, high) == (0.001, 10**9)


def test_plan_covers_the_window_with_rollups_only_where_complete():
    from datetime import UTC, datetime

    t = lambda d, h=0, m=0: datetime(2026, 11, d, h, m, tzinfo=UTC)  # noqa: E731
    parts = plan(t(1, 10, 30), t(5, 14, 15), "day", hourly_until=t(5, 12), daily_until=t(5))

    assert sorted((p.start, p.source, p.end) for p in parts) == [
        (t(1, 10, 30), "raw", t(1, 11)),
        (t(1, 11), "hour", t(2)),
        (t(2), "day", t(5)),
        (t(5), "hour", t(5, 12)),
        (t(5, 12), "raw", t(5, 14, 15)),
    ]
    assert plan(t(1), t(2), None, t(9), t(9)) == [plan(t(1), t(2), None, t(9), t(9))[0]]
    assert math.isclose(
        sum((p.end - p.start).total_seconds() for p in parts),
        (t(5, 14, 15) - t(1, 10, 30)).total_seconds(),
    )


@pytest.mark.django_db
def test_the_sql_quantile_function_reads_sketches_as_python_does():
    rng = random.Random(8)
    values = [rng.lognormvariate(4, 1.2) for _ in range(5000)]
    counts = sketch_of(values)
    qs = (0.01, 0.5, 0.9, 0.95, 0.99, 1.0)
    vector = "[" + ",".join(str(int(c)) for c in counts) + "]"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT apm_sketch_quantile(%s::vector, q) FROM unnest(%s::float8[]) AS q",
            [vector, list(qs)],
        )
        in_sql = [row[0] for row in cursor.fetchall()]

    # Python's answer, without its clamping to the exact min and max.
    in_python = sketch.quantiles(counts, qs, 0.0, float("inf"))
    assert in_sql == pytest.approx(in_python, rel=1e-12)
