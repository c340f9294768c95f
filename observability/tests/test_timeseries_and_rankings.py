"""/kpis/timeseries/, /top-endpoints/ and /services/ against the raw-row reference."""

from datetime import UTC, datetime, timedelta

import pytest

from observability.analytics.rollups import day_floor
from observability.tests.analytics_data import generate, reference
from observability.tests.test_kpis import assert_matches, iso, refresh

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def project(isolated_project):
    return isolated_project


@pytest.fixture
def api(isolated_api):
    return isolated_api


@pytest.fixture
def base():
    return day_floor(datetime.now(UTC)) - timedelta(days=3)


@pytest.fixture
def rows(project, base):
    data = generate(project, base, base + timedelta(days=2), 4000, seed=11)
    refresh()
    return data


@pytest.mark.parametrize(
    ("interval", "step", "start_offset", "end_offset"),
    [
        ("day", timedelta(days=1), timedelta(hours=5), timedelta(days=2)),
        ("hour", timedelta(hours=1), timedelta(hours=2, minutes=30), timedelta(hours=9)),
        (
            "minute",
            timedelta(minutes=1),
            timedelta(hours=3, minutes=10),
            timedelta(hours=3, minutes=40),
        ),
    ],
)
def test_each_bucket_equals_the_definition_and_gaps_are_zero(
    api, rows, base, interval, step, start_offset, end_offset
):
    start, end = base + start_offset, base + end_offset

    response = api.get(
        "/api/v1/kpis/timeseries/", {"from": iso(start), "to": iso(end), "interval": interval}
    )

    assert response.status_code == 200, response.json()
    points = response.json()["results"]
    first = start.replace(
        minute=0 if interval != "minute" else start.minute, second=0, microsecond=0
    )
    if interval == "day":
        first = day_floor(start)
    assert points[0]["bucket"] == iso(first)
    assert len(points) == len({p["bucket"] for p in points})
    for point in points:
        bucket = datetime.fromisoformat(point["bucket"])
        lo, hi = max(bucket, start), min(bucket + step, end)
        assert_matches(point, reference(rows, lo, hi))
    assert sum(p["hits"] for p in points) == reference(rows, start, end)["hits"]


def test_an_empty_series_is_zero_filled(api, base):
    start = base - timedelta(days=20)

    points = api.get(
        "/api/v1/kpis/timeseries/", {"from": iso(start), "to": iso(start + timedelta(hours=5))}
    ).json()["results"]

    assert [p["hits"] for p in points] == [0] * 5
    assert all(p["apdex"] is None and p["latency_ms"]["p95"] is None for p in points)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"interval": "week"}, "interval"),
        (
            {"interval": "minute", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            "interval",
        ),
    ],
)
def test_bad_series_parameters(api, params, parameter):
    response = api.get("/api/v1/kpis/timeseries/", params)

    assert response.status_code == 400
    assert parameter in response.json()["errors"]


def endpoints_reference(rows, start, end):
    keys = {(r["service"], r["endpoint"], r["method"]) for r in rows}
    return {
        key: reference(rows, start, end, service=key[0], endpoint=key[1], method=key[2])
        for key in keys
    }


@pytest.mark.parametrize("by", ["hits", "errors", "error_rate", "p95", "p99", "apdex"])
def test_top_endpoints_rank_by_each_kpi(api, rows, base, by, settings):
    settings.APM_TOP_MIN_HITS = 20
    start, end = base + timedelta(hours=1), base + timedelta(days=1, hours=20)

    response = api.get(
        "/api/v1/top-endpoints/", {"from": iso(start), "to": iso(end), "by": by, "limit": 4}
    )

    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    assert len(results) == 4
    expected = endpoints_reference(rows, start, end)
    for row in results:
        assert_matches(row, expected[(row["service"], row["endpoint"], row["method"])])
    values = [row["latency_ms"][by] if by in ("p95", "p99") else row[by] for row in results]
    assert values == sorted(values, reverse=by != "apdex")


def test_rates_rank_only_endpoints_with_enough_hits(api, rows, base, settings):
    settings.APM_TOP_MIN_HITS = 10**6

    response = api.get(
        "/api/v1/top-endpoints/",
        {"from": iso(base), "to": iso(base + timedelta(days=2)), "by": "error_rate"},
    )

    assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("params", "parameter"),
    [({"by": "speed"}, "by"), ({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit")],
)
def test_bad_ranking_parameters(api, params, parameter):
    response = api.get("/api/v1/top-endpoints/", params)

    assert response.status_code == 400
    assert parameter in response.json()["errors"]


def test_services_have_one_row_each_with_their_kpis(api, rows, base):
    start, end = base + timedelta(minutes=45), base + timedelta(days=1, hours=3)

    results = api.get("/api/v1/services/", {"from": iso(start), "to": iso(end)}).json()["results"]

    assert [r["service"] for r in results] == sorted(
        {r["service"] for r in rows}, key=lambda s: -reference(rows, start, end, service=s)["hits"]
    )
    for row in results:
        assert_matches(row, reference(rows, start, end, service=row["service"]))
