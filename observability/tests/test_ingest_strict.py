"""Ingest rejections: every bad input is a 4xx naming the problem, and nothing is stored."""

import gzip
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from observability.models import ApiRequest
from observability.tests.utils import client_with, make_key
from observability.tests.utils import event_payload as event

pytestmark = pytest.mark.django_db
URL = "/api/v1/ingest/"


def post_raw(api, body: bytes, content_type="application/json", **headers):
    return api.generic("POST", URL, body, content_type=content_type, **headers)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status_code": 600}, "status_code"),
        ({"status_code": "200"}, "status_code"),
        ({"latency_ms": -0.1}, "latency_ms"),
        ({"latency_ms": 86_400_001}, "latency_ms"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"method": "G3T"}, "method"),
        ({"service": ""}, "service"),
        ({"service": "s" * 129}, "service"),
        ({"trace_id": "abc"}, "trace_id"),
        ({"span_id": "z" * 16}, "span_id"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2020-01-01T00:00:00Z"}, "time"),
        ({"error_message": "é" * 2049}, "error_message"),
        ({"attributes": [1, 2]}, "attributes"),
        ({"attributes": {"blob": "x" * 8200}}, "attributes"),
        ({"attributes": {"nul": "a\u0000b"}}, "attributes"),
        ({"host": "bad\u0000host"}, "host"),
        ({"request_bytes": -1}, "request_bytes"),
        ({"endpoint": None}, "endpoint"),
    ],
)
def test_one_invalid_event_rejects_the_batch_naming_index_and_field(ingest, fields, field):
    response = ingest([event(), event(**fields)])

    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["errors"]) == [f"events[1].{field}"]
    assert ApiRequest.objects.count() == 0


def test_a_missing_required_field_is_named(ingest):
    incomplete = event()
    del incomplete["latency_ms"]

    assert ingest([incomplete]).json()["errors"] == {
        "events[0].latency_ms": ["This field is required."]
    }


def test_times_too_far_ahead_are_rejected(ingest):
    future = (timezone.now() + timedelta(minutes=6)).isoformat()

    assert "events[0].time" in ingest([event(time=future)]).json()["errors"]


def test_malformed_json_gives_its_position(api):
    response = post_raw(api, b'[{"service": "a",, }]')

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert "byte 17" in response.json()["detail"]


@pytest.mark.parametrize("body", [b'"events"', b'{"data": []}', b"42", b'{"events": 3}'])
def test_a_body_that_is_not_a_list_of_events_is_400(api, body):
    response = post_raw(api, body)

    assert response.status_code == 400
    assert "array of events" in response.json()["detail"]


@pytest.mark.parametrize("body", [b"\xff\xfe[]", b'["\\ud800"]'])
def test_invalid_text_encodings_are_400(api, body):
    assert post_raw(api, body).status_code == 400


def test_an_empty_batch_is_400(ingest):
    response = ingest([])

    assert response.status_code == 400
    assert "events" in response.json()["errors"]


def test_wrong_content_type_is_415(api):
    response = post_raw(api, b"service=a", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_unknown_content_encoding_is_415(api):
    response = post_raw(api, b"[]", HTTP_CONTENT_ENCODING="br")

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_encoding"


def test_a_body_over_the_byte_limit_is_413(api, settings):
    settings.APM_INGEST_MAX_BYTES = 1024

    response = post_raw(api, orjson.dumps([event() for _ in range(20)]))

    assert response.status_code == 413
    assert ApiRequest.objects.count() == 0


def test_too_many_events_is_413(ingest, settings):
    settings.APM_INGEST_MAX_EVENTS = 5

    response = ingest([event() for _ in range(6)])

    assert response.status_code == 413
    assert "limit is 5" in response.json()["detail"]


def test_a_gzip_bomb_is_413_without_inflating_it(api, settings):
    settings.APM_INGEST_MAX_BYTES = 64 * 1024
    bomb = gzip.compress(b"[" + b" " * (50 * 1024 * 1024) + b"]")
    assert len(bomb) < settings.APM_INGEST_MAX_BYTES

    response = post_raw(api, bomb, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 413
    assert "decompressed" in response.json()["detail"]


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b"[]")[:-6]])
def test_broken_gzip_is_400(api, body):
    response = post_raw(api, body, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 400
    assert "gzip" in response.json()["detail"]


def test_no_key_is_401_and_read_only_key_is_403(project):
    assert client_with(None).post(URL, [event()], format="json").status_code == 401
    reader = client_with(make_key(project, scopes=["read"]))
    response = reader.post(URL, [event()], format="json")
    assert response.status_code == 403
    assert "ingest" in response.json()["detail"]


def test_rate_limit_is_429_with_retry_after(ingest, settings):
    settings.APM_INGEST_RATE_LIMIT = 10
    settings.APM_INGEST_RATE_BURST = 30
    settings.APM_INGEST_MAX_EVENTS = 30

    assert ingest([event() for _ in range(30)]).status_code == 200
    response = ingest([event() for _ in range(25)])

    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert 1 <= int(response["Retry-After"]) <= 3  # ~25 events at 10/s refill
    assert ApiRequest.objects.count() == 30


def test_invalid_strict_flag_is_400(ingest):
    response = ingest([event()], query="?strict=maybe")

    assert response.status_code == 400
    assert "strict" in response.json()["errors"]
