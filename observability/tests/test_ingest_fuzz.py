"""Property tests of the ingest doors (Hypothesis): whatever the body, no 5xx, and a
strict batch is stored whole or not at all.

Bodies are built from valid events with fields replaced by hostile values (huge and
negative numbers, NUL, lone surrogates, trailing newlines, deep nesting, wrong types),
and from arbitrary bytes. Each example runs against the real database through the
HTTP API, so a value that passes validation but cannot be stored shows as a 5xx or a
partial batch.
"""

from __future__ import annotations

import gzip

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from observability.ingest.errors import MalformedBody
from observability.ingest.events import decode_batch
from observability.models import ApiRequest
from observability.tests.utils import event_payload

pytestmark = pytest.mark.django_db
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# JSON texts (raw, so that escapes a JSON library would never write can be sent).
HOSTILE_JSON = st.sampled_from(
    [
        b"null", b"true", b"0", b"-1", b"1e999999", b"-1e400", b"9223372036854775808",
        b"18446744073709551616", b"1.5", b'""', b'"\\u0000"', b'"\\ud800"', b'"\\udc00x"',
        b'"GET\\n"', b'"a\\u0000b"', b"[]", b"{}", b'{"k": "\\ud800x"}', b'{"\\u0000": 1}',
        b"[" * 2000 + b"]" * 2000, b'{"a":' * 40 + b"1" + b"}" * 40, b'"' + b"x" * 3000 + b'"',
        b'"/' + b"a/" * 1500 + b'"', b'"2026-13-45T99:99:99Z"', b'"0001-01-01T00:00:00Z"',
    ]
)  # fmt: skip
FIELDS = [
    "time", "service", "endpoint", "path", "method", "status_code", "latency_ms", "event_id",
    "trace_id", "span_id", "environment", "host", "error_message", "request_bytes",
    "response_bytes", "attributes", "unknown_field",
]  # fmt: skip


@st.composite
def hostile_event(draw) -> bytes:
    """A valid event's JSON with up to three fields replaced by hostile JSON texts."""
    event = {key: orjson.dumps(value) for key, value in event_payload().items()}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        event[field] = draw(HOSTILE_JSON)
    return b"{" + b",".join(orjson.dumps(k) + b":" + v for k, v in event.items()) + b"}"


@st.composite
def hostile_batch(draw) -> bytes:
    events = draw(st.lists(st.one_of(hostile_event(), st.just(orjson.dumps(event_payload()))),
                           min_size=1, max_size=6))  # fmt: skip
    body = b"[" + b",".join(events) + b"]"
    return gzip.compress(body) if draw(st.booleans()) else body


def post(api, body: bytes, strict: bool):
    headers = {"HTTP_CONTENT_ENCODING": "gzip"} if body[:2] == b"\x1f\x8b" else {}
    query = "" if strict else "?strict=false"
    return api.generic(
        "POST", f"/api/v1/ingest/{query}", body, content_type="application/json", **headers
    )


@FUZZ
@given(body=hostile_batch())
def test_a_strict_batch_is_stored_whole_or_not_at_all(api, project, body):
    before = ApiRequest.objects.filter(project=project).count()

    response = post(api, body, strict=True)

    stored = ApiRequest.objects.filter(project=project).count() - before
    assert response.status_code in (200, 400, 413), response.content[:300]
    if response.status_code == 200:
        result = response.json()
        assert result["rejected"] == 0
        assert stored == result["accepted"] - result["duplicates"]
    else:
        assert stored == 0


@FUZZ
@given(body=hostile_batch())
def test_a_non_strict_batch_stores_exactly_what_it_accepts(api, project, body):
    before = ApiRequest.objects.filter(project=project).count()

    response = post(api, body, strict=False)

    stored = ApiRequest.objects.filter(project=project).count() - before
    assert response.status_code in (200, 400, 413), response.content[:300]
    if response.status_code == 200:
        result = response.json()
        assert stored == result["accepted"] - result["duplicates"]
        assert len(result["errors"]) >= result["rejected"] > 0 or result["rejected"] == 0
    else:
        assert stored == 0


@FUZZ
@given(body=hostile_event())
def test_the_single_create_answers_201_or_a_4xx(api, project, body):
    response = api.generic("POST", "/api/v1/requests/", body, content_type="application/json")

    assert response.status_code in (201, 400, 409), response.content[:300]


@settings(max_examples=2000, deadline=None)
@given(body=st.binary(max_size=300) | hostile_batch())
@example(body=b"[{:\x00}}")  # a member without a key: was a TypeError (a 500)
def test_the_decoder_refuses_any_body_only_with_malformed_body(body):
    try:
        decoded = decode_batch(body)
    except MalformedBody:
        return
    assert isinstance(decoded, list)
