"""REST batch ingest of valid events: what is stored, idempotency, encodings."""

import gzip
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.utils import timezone

from observability.models import ApiRequest, Dimension, DimensionValue
from observability.tests.utils import client_with, make_key
from observability.tests.utils import event_payload as event

pytestmark = pytest.mark.django_db
URL = "/api/v1/ingest/"


def test_a_batch_is_stored_with_every_field(ingest, project):
    moment = datetime.now(UTC).replace(microsecond=123000) - timedelta(minutes=1)
    full = event(
        time=moment.isoformat(),
        service="payments",
        endpoint="/payments/{id}",
        method="post",
        status_code=503,
        latency_ms=1234.5,
        trace_id="AB" * 16,
        span_id="cd" * 8,
        environment="production",
        host="payments-1",
        error_message="upstream timeout",
        request_bytes=512,
        response_bytes=64,
        attributes={"region": "eu", "retry": 2},
    )

    response = ingest([full, event()])

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": 0,
        "overflowed": 0,
        "errors": {},
    }
    row = ApiRequest.objects.get(event_id=full["event_id"])
    assert row.project_id == project.pk
    assert (row.time, row.service, row.endpoint, row.method) == (
        moment,
        "payments",
        "/payments/{id}",
        "POST",
    )
    assert (row.status_code, row.latency_ms, row.trace_id, row.span_id) == (
        503,
        1234.5,
        "ab" * 16,
        "cd" * 8,
    )
    assert (row.environment, row.host, row.error_message) == (
        "production",
        "payments-1",
        "upstream timeout",
    )
    assert (row.request_bytes, row.response_bytes) == (512, 64)
    assert row.attributes == {"region": "eu", "retry": 2}


def test_envelope_form_and_epoch_milliseconds(ingest):
    millis = int((timezone.now() - timedelta(minutes=2)).timestamp() * 1000)

    response = ingest({"events": [event(time=millis)]})

    assert response.status_code == 200
    stored = ApiRequest.objects.get()
    assert int(stored.time.timestamp() * 1000) == millis


def test_missing_event_id_is_generated(ingest):
    body = event()
    del body["event_id"]

    assert ingest([body, body]).json()["accepted"] == 2
    assert ApiRequest.objects.values("event_id").distinct().count() == 2


def test_raw_paths_are_normalised_to_routes(ingest):
    body = event(path="/users/123/orders/9f1c2b3a4d5e6f708192a3b4c5d6e7f8?expand=items")
    del body["endpoint"]

    ingest([body])

    assert ApiRequest.objects.get().endpoint == "/users/{id}/orders/{id}"


def test_the_same_batch_twice_is_stored_once(ingest):
    batch = [event() for _ in range(50)]

    first, second = ingest(batch).json(), ingest(batch).json()

    assert (first["accepted"], first["duplicates"]) == (50, 0)
    assert (second["accepted"], second["duplicates"]) == (50, 50)
    assert ApiRequest.objects.count() == 50


def test_a_batch_mixing_stored_and_new_events_stores_only_the_new(ingest):
    old = [event() for _ in range(3)]
    ingest(old)
    new = [event() for _ in range(2)]

    body = ingest(old + new).json()

    assert (body["accepted"], body["duplicates"]) == (5, 3)
    assert ApiRequest.objects.count() == 5


def test_an_event_repeated_inside_one_batch_is_stored_once(ingest):
    once = event()

    body = ingest([once, once, event()]).json()

    assert (body["accepted"], body["duplicates"]) == (3, 1)
    assert ApiRequest.objects.count() == 2


def test_gzip_bodies_are_accepted(api):
    payload = gzip.compress(orjson.dumps([event() for _ in range(20)]))

    response = api.generic(
        "POST", URL, payload, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )

    assert response.status_code == 200, response.json()
    assert ApiRequest.objects.count() == 20


def test_ingest_only_key_can_ingest(project):
    writer = client_with(make_key(project, scopes=["ingest"]))

    assert writer.post(URL, [event()], format="json").status_code == 200


def test_endpoints_are_registered(ingest, project):
    ingest([event(endpoint="/a"), event(endpoint="/b"), event(service="users", endpoint="/a")])

    admitted = DimensionValue.objects.filter(project=project, dimension=Dimension.ENDPOINT)
    assert set(admitted.values_list("scope", "value")) == {
        ("checkout", "/a"),
        ("checkout", "/b"),
        ("users", "/a"),
    }


def test_query_count_does_not_grow_with_the_batch(api, django_assert_max_num_queries):
    def ingest(events):  # the request alone, without the fixture's error-group fold
        return api.post("/api/v1/ingest/", events, format="json")

    ingest([event()])  # warm: key last-use, endpoint admission, rate bucket row

    # The key lookup, the rate-limit transaction (SET LOCAL, upsert) and the COPY's
    # transaction; in a test each transaction shows as SAVEPOINT + RELEASE. COPY itself
    # is not a captured query.
    with django_assert_max_num_queries(7):
        assert ingest([event() for _ in range(500)]).status_code == 200
