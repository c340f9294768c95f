"""Ingest you can trust: hostile input, tenants, idempotency, the one pipeline.

One test (or a few) per defect of issue 10, through the HTTP API (Django's test client
for the REST doors, the live server and the real OpenTelemetry SDK where the transport
or the exporter matters). The transport through gunicorn and Nginx is in
test_ingest_transport.py.
"""

from __future__ import annotations

import gzip
import http.client
import signal
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from observability.models import ApiRequest
from observability.tests.test_otlp import to_otlp_json
from observability.tests.utils import client_with, event_payload, make_key

pytestmark = pytest.mark.django_db
RESOURCE = Resource.create({"service.name": "shop"})


def post_raw(api, path: str, body: bytes, content_type="application/json", **headers):
    return api.generic("POST", path, body, content_type=content_type, **headers)


def stored(project, **filters) -> list[ApiRequest]:
    return list(ApiRequest.objects.filter(project=project, **filters).order_by("time"))


def sdk_spans(build) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("test"))
    return memory.get_finished_spans()


def http_server_span(tracer, route="/a", status=200):
    with tracer.start_as_current_span("GET " + route, kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", "GET")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)


# --- 1. Chunked bodies ------------------------------------------------------------------


def send_chunked(url: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked and no Content-Length, as streaming exporters do."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    pieces = [body[i : i + 700] for i in range(0, len(body), 700)]
    conn.request("POST", path, body=iter(pieces), headers=headers, encode_chunked=True)
    response = conn.getresponse()
    answer = response.status, response.read()
    conn.close()
    return answer


@pytest.mark.django_db(transaction=True)
def test_chunked_rest_batch_is_read_whole_by_the_development_server(live_server, project):
    """live_server is Django's runserver machinery (a threaded wsgiref server)."""
    events = [event_payload(path=f"/items/{n}") for n in range(200)]
    headers = {"Authorization": f"Bearer {make_key(project)}", "Content-Type": "application/json"}

    status, body = send_chunked(live_server.url, "/api/v1/ingest/", orjson.dumps(events), headers)

    assert status == 200, body
    assert orjson.loads(body)["accepted"] == 200
    assert len(stored(project)) == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_chunked_otlp_export_is_read_whole(live_server, project, encoding):
    spans = sdk_spans(lambda tracer: [http_server_span(tracer, f"/r{n}") for n in range(50)])
    request = encode_spans(spans)
    if encoding == "protobuf":
        body, content_type = request.SerializeToString(), "application/x-protobuf"
    else:
        body, content_type = orjson.dumps(to_otlp_json(spans)), "application/json"
    headers = {"Authorization": f"Bearer {make_key(project)}", "Content-Type": content_type}

    status, answer = send_chunked(live_server.url, "/v1/traces", body, headers)

    assert status == 200, answer
    assert len(stored(project)) == 50


# --- 2. Idempotency is per project --------------------------------------------------------


def test_the_same_event_id_and_time_in_two_projects_is_stored_in_both(project, other_project):
    event = event_payload()
    for owner in (project, other_project):
        response = client_with(make_key(owner)).post("/api/v1/ingest/", [event], format="json")
        assert response.json()["duplicates"] == 0, response.json()

    assert len(stored(project)) == len(stored(other_project)) == 1


def test_single_create_conflicts_only_within_its_project(project, other_project):
    event = event_payload()
    first = client_with(make_key(project)).post("/api/v1/requests/", event, format="json")
    other = client_with(make_key(other_project)).post("/api/v1/requests/", event, format="json")
    again = client_with(make_key(project)).post("/api/v1/requests/", event, format="json")

    assert (first.status_code, other.status_code, again.status_code) == (201, 201, 409)


@pytest.mark.django_db(transaction=True)
def test_spans_exported_to_two_projects_are_stored_in_both(live_server, project, other_project):
    spans = sdk_spans(lambda tracer: http_server_span(tracer))
    for owner in (project, other_project):
        exporter = OTLPSpanExporter(
            endpoint=f"{live_server.url}/v1/traces",
            headers={"Authorization": f"Bearer {make_key(owner)}"},
        )
        assert exporter.export(spans) == SpanExportResult.SUCCESS

    mine, theirs = stored(project), stored(other_project)
    assert len(mine) == len(theirs) == 1
    assert mine[0].span_id == theirs[0].span_id
    assert mine[0].event_id != theirs[0].event_id  # the derived id is the project's own


# --- 3. Poison events: valid-looking values that could not be stored -----------------------

POISON = {
    "request_bytes past int64": ({"request_bytes": 2**63}, "request_bytes"),
    "an endpoint longer than its column": ({"endpoint": None, "path": "/" + "a" * 2000}, "path"),
    "a method with a trailing newline": ({"method": "GET\n"}, "method"),
    "a trace id with a trailing newline": ({"trace_id": "a" * 32 + "\n"}, "trace_id"),
    "a span id with a trailing newline": ({"span_id": "b" * 16 + "\n"}, "span_id"),
    "a NUL in the service": ({"service": "shop\x00"}, "service"),
    "a NUL in an attribute key": ({"attributes": {"k\x00": 1}}, "attributes"),
    "a NUL in an attribute value": ({"attributes": {"k": "v\x00"}}, "attributes"),
}
RAW_POISON = {
    # Raw JSON texts the client sends: numbers and escapes a JSON library would refuse to
    # produce, but a hostile or broken client sends.
    "an attribute number beyond PostgreSQL's range": (b'{"n": 1e999999}', "attributes"),
    "a lone surrogate in an attribute": (b'{"s": "\\ud800x"}', "attributes"),
    "attributes nested too deeply": (b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}", "attributes"),
}


def event_json(attributes_json: bytes | None = None, **fields) -> bytes:
    """One event's JSON, with its attributes spliced in as raw text."""
    event = event_payload(**fields)
    event = {key: value for key, value in event.items() if value is not None}
    text = orjson.dumps(event)
    if attributes_json is None:
        return text
    return text[:-1] + b', "attributes": ' + attributes_json + b"}"


def poison_cases() -> list:
    cases = [pytest.param(event_json(**fields), field, id=name)
             for name, (fields, field) in POISON.items()]  # fmt: skip
    cases += [pytest.param(event_json(attributes), field, id=name)
              for name, (attributes, field) in RAW_POISON.items()]  # fmt: skip
    return cases


POISON_CASES = poison_cases()


@pytest.mark.parametrize(("poison", "field"), POISON_CASES)
def test_a_poison_event_is_a_400_in_strict_mode_naming_it(api, project, poison, field):
    body = b"[" + event_json() + b"," + poison + b"]"

    response = post_raw(api, "/api/v1/ingest/", body)

    assert response.status_code == 400, response.content[:300]
    assert list(response.json()["errors"]) == [f"events[1].{field}"]
    assert stored(project) == []


@pytest.mark.parametrize(("poison", "field"), POISON_CASES)
def test_a_poison_event_costs_only_itself_in_non_strict_mode(api, project, poison, field):
    body = b"[" + event_json() + b"," + poison + b"," + event_json() + b"]"

    response = post_raw(api, "/api/v1/ingest/?strict=false", body)

    assert response.status_code == 200, response.content[:300]
    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    assert list(result["errors"]) == [f"events[1].{field}"]
    assert len(stored(project)) == 2


def test_repeated_attributes_are_checked_for_every_event(api, project):
    """Small attributes objects are remembered once checked (events.py): an invalid one
    is refused each time it comes, and a folded method is kept whatever came before."""
    good, bad = {"region": "eu"}, {"region": "eu\x00"}
    events = [event_payload(attributes=attributes) for attributes in (good, bad, bad)]
    events.append(event_payload(method="PURGE", attributes=good))

    response = post_raw(api, "/api/v1/ingest/?strict=false", orjson.dumps(events))

    result = response.json()
    assert (result["accepted"], result["rejected"]) == (2, 2)
    assert list(result["errors"]) == ["events[1].attributes", "events[2].attributes"]
    rows = {row.method: row.attributes for row in stored(project)}
    assert rows == {
        "GET": {"region": "eu"},
        "_OTHER": {"region": "eu", "http.request.method_original": "PURGE"},
    }


@pytest.mark.parametrize(("poison", "field"), POISON_CASES)
def test_a_poison_record_is_a_400_from_the_single_create(api, project, poison, field):
    response = post_raw(api, "/api/v1/requests/", poison)

    assert response.status_code == 400, response.content[:300]
    assert list(response.json()["errors"]) == [field]
    assert stored(project) == []


def test_a_deeply_nested_otlp_json_export_is_a_400(api):
    depth = 3000
    nested = b'{"kvlistValue": {"values": [{"key": "k", "value": ' * depth
    nested += b'{"stringValue": "x"}' + b"}]}}" * depth
    body = b'{"resourceSpans": [{"resource": {"attributes": [{"key": "deep", "value": '
    body += nested + b"}]}}]}"

    response = post_raw(api, "/v1/traces", body)

    assert response.status_code == 400


# --- 4. Bounded OTLP attributes -----------------------------------------------------------


def test_many_short_span_attributes_are_truncated_in_one_pass(api, project):
    """Used to loop forever: truncation dropped and re-added its own marker."""
    spans = sdk_spans(lambda tracer: _span_with_attributes(tracer, 5000))
    body = encode_spans(spans).SerializeToString()
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(60)  # an infinite loop fails the test instead of hanging the suite
    try:
        response = post_raw(api, "/v1/traces", body, content_type="application/x-protobuf")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    assert response.status_code == 200
    (row,) = stored(project)
    assert row.attributes["_truncated"] is True
    assert len(orjson.dumps(row.attributes)) <= 8192


def _span_with_attributes(tracer, count: int) -> None:
    with tracer.start_as_current_span("GET /a", kind=SpanKind.SERVER) as span:
        span.set_attribute("http.request.method", "GET")
        span.set_attribute("http.route", "/a")
        span.set_attribute("http.response.status_code", 200)
        for n in range(count):
            span.set_attribute(f"a{n}", "x")


def _too_slow(signum, frame):
    raise TimeoutError("attribute truncation did not finish")


# --- 5. Bounded cardinality ----------------------------------------------------------------


def test_non_standard_methods_fold_into_other_keeping_the_original(ingest, project):
    response = ingest([event_payload(method="PROPFIND"), event_payload(method="get")])

    assert response.status_code == 200, response.json()
    rows = {row.method: row for row in stored(project)}
    assert set(rows) == {"_OTHER", "GET"}
    assert rows["_OTHER"].attributes["http.request.method_original"] == "PROPFIND"


def test_services_beyond_the_cap_go_to_the_overflow_service(ingest, project, settings):
    settings.APM_SERVICE_CARDINALITY_CAP = 3

    response = ingest([event_payload(service=f"svc-{n}") for n in range(5)])

    assert response.json()["overflowed"] == 2
    services = sorted(row.service for row in stored(project))
    assert services == ["svc-0", "svc-1", "svc-2", "{overflow}", "{overflow}"]


def test_environments_beyond_the_cap_go_to_the_overflow_environment(ingest, project, settings):
    settings.APM_ENVIRONMENT_CARDINALITY_CAP = 2

    response = ingest([event_payload(environment=f"env-{n}") for n in range(4)])

    assert response.json()["overflowed"] == 2
    environments = sorted(row.environment for row in stored(project))
    assert environments == ["env-0", "env-1", "{overflow}", "{overflow}"]


def test_metrics_do_not_label_requests_with_arbitrary_methods(client):
    client.generic("BREW", "/healthz")

    metrics = client.get("/metrics").content.decode()

    assert 'method="BREW"' not in metrics
    assert 'method="_OTHER"' in metrics


# --- 6. Every SERVER span is a record ---------------------------------------------------


def test_the_otlp_repositorys_example_export_is_recorded(api, project):
    """opentelemetry-proto's examples/trace.json: one SERVER span, no HTTP attributes."""
    example = {
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "my.service"}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "my.library", "version": "1.0.0"},
                "spans": [{
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "parentSpanId": "eee19b7ec3c1b173",
                    "name": "I'm a server span",
                    "startTimeUnixNano": str(_nanos(datetime.now(UTC) - timedelta(seconds=2))),
                    "endTimeUnixNano": str(_nanos(datetime.now(UTC) - timedelta(seconds=1))),
                    "kind": 2,
                    "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
                }],
            }],
        }]
    }  # fmt: skip

    response = post_raw(api, "/v1/traces", orjson.dumps(example))

    assert response.status_code == 200
    assert "rejected" not in response.content.decode()
    (row,) = stored(project)
    assert (row.service, row.endpoint, row.method) == ("my.service", "I'm a server span", "_OTHER")
    assert row.status_code == 200
    assert row.attributes["my.span.attr"] == "some value"


def _nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


@pytest.mark.django_db(transaction=True)
def test_grpc_server_spans_map_their_status_and_method(live_server, project):
    def build(tracer):
        for code in (0, 5, 14):
            with tracer.start_as_current_span("shop.Cart/Get", kind=SpanKind.SERVER) as span:
                span.set_attribute("rpc.system", "grpc")
                span.set_attribute("rpc.service", "shop.Cart")
                span.set_attribute("rpc.method", "Get")
                span.set_attribute("rpc.grpc.status_code", code)
                if code:
                    span.set_status(Status(StatusCode.ERROR, "not ok"))

    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {make_key(project)}"},
    )
    assert exporter.export(sdk_spans(build)) == SpanExportResult.SUCCESS

    rows = stored(project)
    assert {(row.endpoint, row.method) for row in rows} == {("shop.Cart/Get", "_OTHER")}
    by_code = {row.attributes["rpc.grpc.status_code"]: row.status_code for row in rows}
    assert by_code == {0: 200, 5: 404, 14: 503}


def test_other_server_spans_take_their_status_from_the_span(api, project):
    def build(tracer):
        with tracer.start_as_current_span("consume orders", kind=SpanKind.SERVER) as span:
            span.set_status(Status(StatusCode.ERROR, "poison message"))

    body = encode_spans(sdk_spans(build)).SerializeToString()
    response = post_raw(api, "/v1/traces", body, content_type="application/x-protobuf")

    assert response.status_code == 200
    assert (
        ExportTraceServiceResponse.FromString(response.content).partial_success.rejected_spans == 0
    )
    (row,) = stored(project)
    assert (row.endpoint, row.method, row.status_code) == ("consume orders", "_OTHER", 500)
    assert row.error_message == "poison message"


# --- 7. Idempotency-Key --------------------------------------------------------------------


def test_a_retried_batch_with_an_idempotency_key_is_answered_and_stored_once(api, project):
    events = [event_payload(event_id=None), event_payload(event_id=None)]  # no event ids
    body = orjson.dumps([{k: v for k, v in e.items() if v is not None} for e in events])
    key = {"HTTP_IDEMPOTENCY_KEY": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}

    first = post_raw(api, "/api/v1/ingest/", body, **key)
    retry = post_raw(api, "/api/v1/ingest/", body, **key)

    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    assert len(stored(project)) == 2


def test_the_same_idempotency_key_with_another_body_is_422(api, project):
    key = {"HTTP_IDEMPOTENCY_KEY": "batch-17"}
    post_raw(api, "/api/v1/ingest/", orjson.dumps([event_payload()]), **key)

    response = post_raw(api, "/api/v1/ingest/", orjson.dumps([event_payload()]), **key)

    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    assert len(stored(project)) == 1


def test_idempotency_keys_are_per_project(project, other_project):
    body = orjson.dumps([event_payload()])
    for owner in (project, other_project):
        response = post_raw(
            client_with(make_key(owner)), "/api/v1/ingest/", body, HTTP_IDEMPOTENCY_KEY="k1"
        )
        assert response.status_code == 200

    assert len(stored(project)) == len(stored(other_project)) == 1


@pytest.mark.django_db(transaction=True)
def test_an_otlp_export_with_an_idempotency_key_is_stored_once(live_server, project):
    spans = sdk_spans(lambda tracer: http_server_span(tracer))
    exporter = OTLPSpanExporter(
        endpoint=f"{live_server.url}/v1/traces",
        headers={"Authorization": f"Bearer {make_key(project)}", "Idempotency-Key": "export-1"},
    )

    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.export(spans) == SpanExportResult.SUCCESS

    assert len(stored(project)) == 1


# --- 8. Every gzip member ---------------------------------------------------------------


def test_a_body_of_two_gzip_members_is_read_whole(api, project):
    text = orjson.dumps([event_payload(), event_payload(), event_payload()])
    middle = len(text) // 2
    body = gzip.compress(text[:middle]) + gzip.compress(text[middle:])

    response = post_raw(api, "/api/v1/ingest/", body, HTTP_CONTENT_ENCODING="gzip")

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 3


# --- One pipeline --------------------------------------------------------------------------


def test_the_single_create_normalises_paths_and_applies_the_endpoint_cap(api, project, settings):
    settings.APM_ENDPOINT_CARDINALITY_CAP = 1
    first = api.post("/api/v1/requests/", event_payload(endpoint=None, path="/users/42"), "json")
    second = api.post("/api/v1/requests/", event_payload(endpoint="/other"), format="json")

    assert first.status_code == second.status_code == 201
    assert (first.json()["endpoint"], second.json()["endpoint"]) == ("/users/{id}", "{overflow}")


def test_the_single_create_answers_the_stored_record(api, project):
    event = event_payload(method="post", trace_id="A" * 32, attributes={"k": "v"})

    response = api.post("/api/v1/requests/", event, format="json")

    assert response.status_code == 201
    body = response.json()
    assert (body["method"], body["trace_id"], body["attributes"]) == ("POST", "a" * 32, {"k": "v"})
    assert body == api.get(f"/api/v1/requests/{event['event_id']}/").json()
