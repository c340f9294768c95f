"""Filters on /api/v1/requests/ and their error handling."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from observability.tests.utils import make_request

pytestmark = pytest.mark.django_db
URL = "/api/v1/requests/"


def ids(api, query: str) -> set[int]:
    response = api.get(f"{URL}?{query}")
    assert response.status_code == 200, response.json()
    return {row["event_id"] for row in response.json()["results"]}


@pytest.fixture
def rows(project):
    now = timezone.now()
    return {
        "ok": make_request(
            project,
            time=now - timedelta(minutes=10),
            service="users",
            endpoint="/users/{id}",
            method="GET",
            status_code=200,
            latency_ms=20,
            environment="production",
        ),
        "created": make_request(
            project,
            time=now - timedelta(minutes=20),
            service="users",
            endpoint="/users",
            method="POST",
            status_code=201,
            latency_ms=80,
            environment="staging",
        ),
        "missing": make_request(
            project,
            time=now - timedelta(minutes=30),
            service="catalog",
            endpoint="/products/{id}",
            status_code=404,
            latency_ms=5,
        ),
        "broken": make_request(
            project,
            time=now - timedelta(minutes=40),
            service="catalog",
            endpoint="/products",
            status_code=503,
            latency_ms=900,
            error_message="pool exhausted",
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("service=users", {"ok", "created"}),
        ("endpoint=/products/{id}", {"missing"}),
        ("method=post", {"created"}),
        ("status_code=404", {"missing"}),
        ("status_class=5xx", {"broken"}),
        ("status_class=2xx", {"ok", "created"}),
        ("environment=staging", {"created"}),
        ("min_latency_ms=50", {"created", "broken"}),
        ("max_latency_ms=20", {"ok", "missing"}),
        ("service=catalog&status_class=4xx", {"missing"}),
        ("service=nope", set()),
    ],
)
def test_dimension_filters(api, rows, query, expected):
    assert ids(api, query) == {str(rows[name].event_id) for name in expected}


def test_time_window_is_from_inclusive_to_exclusive(api, project):
    edge = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    at_from = make_request(project, time=edge)
    at_to = make_request(project, time=edge + timedelta(hours=1))
    inside = make_request(project, time=edge + timedelta(minutes=30))

    found = ids(api, "from=2026-11-26T12:00:00Z&to=2026-11-26T13:00:00Z")

    assert found == {str(at_from.event_id), str(inside.event_id)}
    assert str(at_to.event_id) not in found


def test_offsets_are_honoured_and_utc_is_returned(api, project):
    row = make_request(project, time=datetime(2026, 11, 26, 10, 0, tzinfo=UTC))

    # 11:30+02:00 is 09:30Z, 12:30+02:00 is 10:30Z; the offset's '+' is URL-encoded.
    response = api.get(f"{URL}?from=2026-11-26T11:30:00%2B02:00&to=2026-11-26T12:30:00%2B02:00")

    assert [r["event_id"] for r in response.json()["results"]] == [str(row.event_id)]
    assert response.json()["results"][0]["time"] == "2026-11-26T10:00:00Z"


def test_unencoded_plus_in_an_offset_is_understood(api, project):
    row = make_request(project, time=datetime(2026, 11, 26, 10, 0, tzinfo=UTC))

    # A client that forgot to encode '+' sends a space.
    assert ids(api, "from=2026-11-26T11:30:00+02:00&to=2026-11-26T12:30:00+02:00") == {
        str(row.event_id)
    }


def test_naive_datetimes_are_utc(api, project):
    row = make_request(project, time=datetime(2026, 11, 26, 10, 0, tzinfo=UTC))

    assert ids(api, "from=2026-11-26T09:59:00&to=2026-11-26T10:01:00") == {str(row.event_id)}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("from=not-a-date", "from"),
        ("to=2026-13-45T00:00:00Z", "to"),
        ("from=2026-11-27T00:00:00Z&to=2026-11-26T00:00:00Z", "from"),
        ("from=2026-11-27T00:00:00Z&to=2026-11-27T00:00:00Z", "from"),
        ("status_code=abc", "status_code"),
        ("status_code=700", "status_code"),
        ("status_class=6xx", "status_class"),
        ("min_latency_ms=-1", "min_latency_ms"),
        ("max_latency_ms=fast", "max_latency_ms"),
    ],
)
def test_invalid_filters_are_400_naming_the_parameter(api, query, parameter):
    response = api.get(f"{URL}?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == [parameter]
    assert body["errors"][parameter][0]
