"""/api/v1/kpis/: every KPI equals the definition computed over the raw rows.

Counts, error rate, rps, Apdex and max are exact; the average to float precision;
percentiles within the sketch's documented relative error. Windows mix whole days
(daily rollups), whole hours (hourly rollups) and partial hours (raw rows).
"""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.core.management import call_command

from observability.analytics import sketch
from observability.analytics.rollups import day_floor, hour_floor
from observability.tests.analytics_data import bimodal, generate, reference, store
from observability.tests.utils import client_with, make_key

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/v1/kpis/"


@pytest.fixture
def project(isolated_project):
    return isolated_project


@pytest.fixture
def api(isolated_api):
    return isolated_api


@pytest.fixture
def base():
    """Midnight four days ago: closed, materialisable days with room on both sides."""
    return day_floor(datetime.now(UTC)) - timedelta(days=4)


def refresh():
    call_command("refresh_apirequest_hourly", verbosity=0)
    call_command("refresh_apirequest_daily", verbosity=0)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def kpis(api, start, end, **params):
    response = api.get(URL, {"from": iso(start), "to": iso(end), **params})
    assert response.status_code == 200, response.json()
    return response.json()


def assert_matches(answer: dict, expected: dict) -> None:
    for field in ("hits", "errors"):
        assert answer[field] == expected[field], field
    assert answer["error_rate"] == pytest.approx(expected["error_rate"], abs=1e-12)
    assert answer["rps"] == pytest.approx(expected["rps"], rel=1e-12)
    if expected["hits"] == 0:
        assert answer["apdex"] is None
        assert set(answer["latency_ms"].values()) == {None}
        return
    assert answer["apdex"] == pytest.approx(expected["apdex"], abs=1e-12)
    latency = answer["latency_ms"]
    assert latency["avg"] == pytest.approx(expected["avg"], rel=1e-9)
    assert latency["max"] == pytest.approx(expected["max"], rel=1e-6)
    for q in ("p50", "p95", "p99"):
        assert latency[q] == pytest.approx(expected[q], rel=sketch.RELATIVE_ERROR + 1e-9), q


@pytest.fixture
def rows(project, base):
    data = generate(project, base - timedelta(hours=6), base + timedelta(days=3, hours=5), 6000)
    refresh()
    return data


@pytest.mark.parametrize(
    ("start_offset", "end_offset"),
    [
        (timedelta(0), timedelta(days=3)),  # whole days: daily rollups only
        (timedelta(hours=3), timedelta(hours=9)),  # whole hours: hourly rollups only
        (timedelta(hours=2, minutes=17), timedelta(days=2, hours=15, minutes=42, seconds=7)),
        (timedelta(minutes=5), timedelta(minutes=50)),  # inside one hour: raw rows only
        (timedelta(hours=-6), timedelta(days=3, hours=5)),  # everything
    ],
)
def test_kpis_equal_the_definition_over_any_window(api, rows, base, start_offset, end_offset):
    start, end = base + start_offset, base + end_offset

    assert_matches(kpis(api, start, end), reference(rows, start, end))


@pytest.mark.parametrize(
    "filters",
    [
        {"service": "checkout"},
        {"service": "checkout", "endpoint": "/pay"},
        {"method": "POST"},
        {"status_class": "5xx"},
        {"status_class": "2xx", "environment": "staging"},
        {"environment": "production"},
        {"service": "search", "method": "GET", "status_class": "4xx", "environment": "staging"},
        {"service": "nope"},
    ],
)
def test_filters(api, rows, base, filters):
    start, end = base + timedelta(hours=1, minutes=30), base + timedelta(days=2, hours=4)

    assert_matches(kpis(api, start, end, **filters), reference(rows, start, end, **filters))


def test_an_empty_window_has_zero_hits_and_no_latency(api, rows, base):
    start = base - timedelta(days=10)

    assert_matches(
        kpis(api, start, start + timedelta(days=1)),
        reference(rows, start, start + timedelta(days=1)),
    )


def test_offsets_in_the_window_are_honoured(api, rows, base):
    start, end = base + timedelta(hours=7), base + timedelta(days=1, hours=7)
    india = timezone(timedelta(hours=5, minutes=30))

    answer = api.get(
        URL, {"from": start.astimezone(india).isoformat(), "to": end.astimezone(india).isoformat()}
    )

    assert answer.status_code == 200
    assert_matches(answer.json(), reference(rows, start, end))


def test_the_open_hour_is_included_from_raw_rows(api, project):
    now = datetime.now(UTC)
    start = hour_floor(now) - timedelta(hours=2)
    data = generate(project, start, now - timedelta(seconds=1), 800, seed=3)
    refresh()  # the current hour is never materialised

    assert_matches(kpis(api, start, now), reference(data, start, now))


def test_a_late_event_shows_up_in_its_closed_hour_after_the_next_refresh(api, project, rows, base):
    hour = base + timedelta(hours=10)
    late = [{"time": hour + timedelta(minutes=20), "service": "checkout", "endpoint": "/cart",
             "method": "GET", "status_code": 500, "latency_ms": 9000.0, "environment": "production",
             "apdex_t_ms": 300.0}]  # fmt: skip
    store(project, late)
    refresh()

    for start, end in ((hour, hour + timedelta(hours=1)), (base, base + timedelta(days=1))):
        assert_matches(kpis(api, start, end), reference(rows + late, start, end))


def test_deleted_requests_leave_the_rollups_after_the_next_refresh(api, project, rows, base):
    from observability.models import ApiRequest

    start, end = base + timedelta(hours=4), base + timedelta(hours=5)
    doomed = ApiRequest.objects.filter(
        project=project, time__gte=start, time__lt=end, service="users"
    )
    doomed.delete()
    refresh()
    remaining = [r for r in rows if not (start <= r["time"] < end and r["service"] == "users")]

    assert_matches(
        kpis(api, base, base + timedelta(days=1)),
        reference(remaining, base, base + timedelta(days=1)),
    )


@pytest.mark.parametrize("shape", ["lognormal", "bimodal"])
def test_rollup_percentiles_are_within_one_percent_of_percentile_disc(api, project, base, shape):
    latency = bimodal if shape == "bimodal" else None
    data = generate(project, base, base + timedelta(days=2), 20000, seed=7, latency=latency)
    refresh()
    start, end = base, base + timedelta(days=2)  # whole days: served by the daily rollups

    answer, expected = kpis(api, start, end)["latency_ms"], reference(data, start, end)
    for q in ("p50", "p95", "p99"):
        assert abs(answer[q] - expected[q]) / expected[q] <= 0.01


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"from": "2026-11-20T00:00:00Z", "to": "2026-11-19T00:00:00Z"}, "from"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"from": "yesterday"}, "from"),
        ({"status_class": "9xx"}, "status_class"),
        ({"status_code": "500"}, "status_code"),
        ({"min_latency_ms": "10"}, "min_latency_ms"),
    ],
)
def test_bad_parameters_are_400_naming_them(api, params, parameter):
    response = api.get(URL, params)

    assert response.status_code == 400
    assert parameter in response.json()["errors"]


def test_kpis_need_the_read_scope(project):
    writer = client_with(make_key(project, scopes=["ingest"]))

    assert writer.get(URL).status_code == 403
    assert client_with(None).get(URL).status_code == 401
