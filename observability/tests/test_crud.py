"""CRUD on /api/v1/requests/: create, list (cursor pagination), retrieve, delete."""

from datetime import timedelta

import pytest
from django.utils import timezone

from observability.models import ApiRequest
from observability.tests.utils import event_payload, make_request

pytestmark = pytest.mark.django_db
URL = "/api/v1/requests/"


def test_create_stores_the_request_in_the_keys_project(api, project):
    response = api.post(URL, event_payload(trace_id="A" * 32, method="post"), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    stored = ApiRequest.objects.get(event_id=body["event_id"])
    assert stored.project_id == project.pk
    assert stored.method == "POST"
    assert stored.trace_id == "a" * 32
    assert body["status_class"] == "2xx"
    assert body["event_id"]


def test_create_same_event_twice_is_a_conflict(api):
    payload = event_payload(event_id="6f1b2f3c-2b7e-4c9a-9d55-0a1b2c3d4e5f")
    assert api.post(URL, payload, format="json").status_code == 201

    response = api.post(URL, payload, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "duplicate"
    assert ApiRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status_code", 600),
        ("status_code", 99),
        ("latency_ms", -1),
        ("latency_ms", 86_400_001),
        ("trace_id", "xyz"),
        ("span_id", "0" * 15),
        ("method", "GET /"),
        ("attributes", ["not", "an", "object"]),
        ("attributes", {"big": "x" * 9000}),
        ("error_message", "e" * 5000),
        ("time", "yesterday"),
        ("request_bytes", -5),
    ],
)
def test_create_rejects_invalid_fields_naming_them(api, field, value):
    response = api.post(URL, event_payload(**{field: value}), format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert field in body["errors"], body
    assert ApiRequest.objects.count() == 0


def test_create_rejects_times_outside_retention_and_the_near_future(api, settings):
    now = timezone.now()
    too_old = now - timedelta(days=settings.APM_RAW_RETENTION_DAYS, minutes=1)
    too_new = now + timedelta(minutes=6)
    for moment in (too_old, too_new):
        response = api.post(URL, event_payload(time=moment.isoformat()), format="json")
        assert response.status_code == 400
        assert "time" in response.json()["errors"]


def test_create_requires_the_mandatory_fields(api):
    response = api.post(URL, {}, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    for field in ("time", "service", "endpoint", "method", "status_code", "latency_ms"):
        assert field in errors


def test_malformed_json_is_a_400(api):
    response = api.post(URL, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_retrieve_returns_utc_times(api, project):
    row = make_request(project, error_message="boom", status_code=503)

    body = api.get(f"{URL}{row.event_id!s}/").json()

    assert body["event_id"] == str(row.event_id)
    assert body["time"].endswith("Z")
    assert body["status_class"] == "5xx"
    assert body["error_message"] == "boom"


def test_another_projects_request_is_a_404(api, other_project):
    foreign = make_request(other_project)

    assert api.get(f"{URL}{foreign.event_id!s}/").status_code == 404
    assert api.delete(f"{URL}{foreign.event_id!s}/").status_code == 404
    assert ApiRequest.objects.filter(event_id=foreign.event_id).exists()


def test_delete(api, project):
    row = make_request(project)

    assert api.delete(f"{URL}{row.event_id!s}/").status_code == 204
    assert not ApiRequest.objects.filter(event_id=row.event_id).exists()
    assert api.get(f"{URL}{row.event_id!s}/").status_code == 404


def test_list_is_newest_first_and_only_the_keys_project(api, project, other_project):
    now = timezone.now()
    rows = [make_request(project, time=now - timedelta(minutes=m)) for m in (5, 1, 3)]
    make_request(other_project, time=now)

    results = api.get(URL).json()["results"]

    assert [r["event_id"] for r in results] == [
        str(rows[1].event_id),
        str(rows[2].event_id),
        str(rows[0].event_id),
    ]


def test_cursor_pagination_visits_every_row_once_even_with_equal_times(api, project):
    moment = timezone.now() - timedelta(minutes=2)
    # Ten rows share one timestamp: the cursor must still not skip or repeat any.
    expected = {str(make_request(project, time=moment).event_id) for _ in range(10)}
    expected |= {
        str(make_request(project, time=moment - timedelta(seconds=s)).event_id) for s in range(1, 8)
    }

    seen, url = [], f"{URL}?page_size=4"
    while url:
        page = api.get(url).json()
        seen += [row["event_id"] for row in page["results"]]
        url = page["next"]

    assert len(seen) == len(expected) == len(set(seen))
    assert set(seen) == expected


def test_oldest_first_ordering(api, project):
    now = timezone.now()
    old = make_request(project, time=now - timedelta(hours=1))
    new = make_request(project, time=now - timedelta(minutes=1))

    results = api.get(f"{URL}?ordering=time").json()["results"]

    assert [r["event_id"] for r in results] == [str(old.event_id), str(new.event_id)]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("ordering=latency", "ordering"),
        ("cursor=garbage", "cursor"),
        ("page_size=abc", "page_size"),
    ],
)
def test_bad_list_parameters_are_400(api, project, query, parameter):
    make_request(project)

    response = api.get(f"{URL}?{query}")

    assert response.status_code == 400
    assert parameter in response.json()["errors"]
