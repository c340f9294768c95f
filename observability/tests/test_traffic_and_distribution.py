"""The analytics the UI adds: traffic per dimension value without sketches, the latency
distribution of a window, and the p50 ranking; checked against raw rows."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from observability.analytics import sketch
from observability.analytics.queries import Filters, KpiQuery, Window
from observability.analytics.rollups import day_floor, hour_floor
from observability.tests.analytics_data import generate, percentile_disc
from observability.tests.test_kpis import iso, refresh

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def base():
    return day_floor(datetime.now(UTC)) - timedelta(days=3)


@pytest.fixture
def rows(isolated_project, base):
    data = generate(isolated_project, base, base + timedelta(days=2), 3000, seed=5)
    refresh()
    return data


def query(project, start, end, **filters) -> KpiQuery:
    return KpiQuery(project.pk, Window(start, end), Filters(**filters), connection)


def test_traffic_by_status_class_counts_each_bucket(isolated_project, rows, base):
    # Partial hours at both edges: raw rows there, rollups in between.
    start, end = base + timedelta(hours=1, minutes=20), base + timedelta(hours=30, minutes=10)
    traffic = query(isolated_project, start, end).traffic_by("status_class", "hour")

    expected = Counter(
        (row["status_code"] // 100, hour_floor(row["time"]))
        for row in rows
        if start <= row["time"] < end
    )
    assert set(traffic) == {status_class for status_class, _ in expected}
    for status_class, points in traffic.items():
        assert [p["hits"] for p in points] == [
            expected[(status_class, p["bucket"])] for p in points
        ]
    first = next(iter(traffic.values()))[0]
    assert first["bucket"] == hour_floor(start)
    assert first["rps"] == first["hits"] / (40 * 60)  # only its part inside the window


def test_the_distribution_holds_every_request_in_the_bucket_of_its_latency(
    isolated_project, rows, base
):
    start, end = base, base + timedelta(days=2)
    bands = query(isolated_project, start, end, service="checkout").distribution()

    latencies = [r["latency_ms"] for r in rows if r["service"] == "checkout"]
    assert sum(count for _, _, count in bands) == len(latencies)
    expected = Counter(sketch.bucket_of(latency) for latency in latencies)
    assert [(low, high) for low, high, _ in bands] == [
        sketch.bucket_bounds(bucket) for bucket in sorted(expected)
    ]
    assert [count for _, _, count in bands] == [expected[b] for b in sorted(expected)]
    for low, high, _ in bands:
        assert low < high


def test_endpoints_rank_by_p50(isolated_api, rows, base):
    start, end = base, base + timedelta(days=2)
    response = isolated_api.get(
        "/api/v1/top-endpoints/", {"from": iso(start), "to": iso(end), "by": "p50", "limit": 50}
    )
    assert response.status_code == 200
    ranked = response.json()["results"]
    p50s = [row["latency_ms"]["p50"] for row in ranked]
    assert p50s == sorted(p50s, reverse=True)
    top = ranked[0]
    key = (top["service"], top["endpoint"], top["method"])
    latencies = [r["latency_ms"] for r in rows if (r["service"], r["endpoint"], r["method"]) == key]
    exact = percentile_disc(latencies, 0.5)
    assert abs(top["latency_ms"]["p50"] - exact) <= sketch.RELATIVE_ERROR * exact
