"""The OTLP/HTTP receiver, driven by the real OpenTelemetry Python SDK.

Spans come from a WSGI app instrumented with opentelemetry-instrumentation-wsgi and are
sent by the SDK's OTLP/HTTP exporter to the live test server. The Python SDK has no
OTLP/JSON exporter, so the JSON tests encode the SDK's own export request with the
OTLP/JSON mapping (hex ids, lowerCamelCase) that JSON exporters of other SDKs send.
"""

import base64
import gzip
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability.models import ApiRequest
from observability.tests.utils import make_key

pytestmark = pytest.mark.django_db(transaction=True)
RESOURCE = Resource.create(
    {"service.name": "shop", "deployment.environment.name": "test", "host.name": "shop-1"}
)


def shop_app(environ, start_response):
    """A tiny service: /checkout fails the way real handlers do (recorded, then 500)."""
    if environ["PATH_INFO"] == "/checkout":
        try:
            raise ValueError("card declined")
        except ValueError as exc:
            trace.get_current_span().record_exception(exc)
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"error"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def serve(app, method: str, path: str) -> None:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    b"".join(app(environ, lambda status, headers, exc_info=None: None))


def tracer_provider(exporter) -> TracerProvider:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def otlp_url(live_server):
    return f"{live_server.url}/v1/traces"


@pytest.fixture
def auth(project):
    return {"Authorization": f"Bearer {make_key(project, scopes=['ingest'])}"}


def exporter_results(exporter):
    """Record what the exporter returned for each export call."""
    results = []
    original = exporter.export

    def export(spans):
        results.append(original(spans))
        return results[-1]

    exporter.export = export
    return results


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_sdk_exports_server_spans_as_request_records(otlp_url, auth, project, compression):
    exporter = OTLPSpanExporter(endpoint=otlp_url, headers=auth, compression=compression)
    results = exporter_results(exporter)
    provider = tracer_provider(exporter)
    app = OpenTelemetryMiddleware(shop_app, tracer_provider=provider)

    serve(app, "GET", "/users/42")
    serve(app, "POST", "/checkout")

    assert results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    rows = {row.endpoint: row for row in ApiRequest.objects.filter(project=project)}
    assert set(rows) == {"/users/{id}", "/checkout"}
    ok, failed = rows["/users/{id}"], rows["/checkout"]
    assert (ok.service, ok.method, ok.status_code) == ("shop", "GET", 200)
    assert (ok.environment, ok.host) == ("test", "shop-1")
    assert ok.latency_ms > 0
    assert len(ok.trace_id) == 32 and len(ok.span_id) == 16
    assert (failed.method, failed.status_code) == ("POST", 500)
    assert failed.error_message == "ValueError: card declined"


def test_the_same_export_twice_is_stored_once(otlp_url, auth, project):
    memory = InMemorySpanExporter()
    serve(OpenTelemetryMiddleware(shop_app, tracer_provider=tracer_provider(memory)), "GET", "/a")
    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=otlp_url, headers=auth)

    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.export(spans) == SpanExportResult.SUCCESS

    row = ApiRequest.objects.get(project=project)
    assert row.span_id == format(spans[0].context.span_id, "016x")


def sdk_spans(build) -> list:
    memory = InMemorySpanExporter()
    build(tracer_provider(memory).get_tracer("test"))
    return memory.get_finished_spans()


def to_otlp_json(spans) -> dict:
    """The OTLP/JSON encoding of an export: protobuf JSON mapping, but ids in hex."""
    document = json_format.MessageToDict(encode_spans(spans))
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def mixed_spans(tracer):
    server = trace.SpanKind.SERVER
    with tracer.start_as_current_span(
        "GET /orders/{id}",
        kind=server,
        attributes={
            "http.request.method": "GET",
            "http.route": "/orders/{id}",
            "http.response.status_code": 404,
            "url.path": "/orders/7",
            "user_agent.original": "curl/8",
        },
    ):
        with tracer.start_as_current_span("SELECT orders", kind=trace.SpanKind.CLIENT):
            pass
    # A status no HTTP response has: the one span that cannot be a record.
    broken = {"http.method": "GET", "http.status_code": 999}
    with tracer.start_as_current_span("broken", kind=server, attributes=broken):
        pass


def test_otlp_json_with_partial_success(otlp_url, auth, project):
    response = httpx.post(otlp_url, json=to_otlp_json(sdk_spans(mixed_spans)), headers=auth)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "spans[1].status_code" in partial["errorMessage"]
    assert "1 non-SERVER span(s) skipped" in partial["errorMessage"]
    row = ApiRequest.objects.get(project=project)
    assert (row.endpoint, row.status_code, row.method) == ("/orders/{id}", 404, "GET")
    assert row.attributes == {"user_agent.original": "curl/8"}


def test_otlp_protobuf_partial_success_response(otlp_url, auth):
    body = encode_spans(sdk_spans(mixed_spans)).SerializeToString()

    response = httpx.post(
        otlp_url, content=body, headers={**auth, "Content-Type": "application/x-protobuf"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 1


def test_a_fully_successful_export_has_no_partial_success(otlp_url, auth):
    def ok(tracer):
        with tracer.start_as_current_span(
            "GET /",
            kind=trace.SpanKind.SERVER,
            attributes={"http.method": "GET", "http.status_code": 200, "http.target": "/"},
        ):
            pass

    response = httpx.post(otlp_url, json=to_otlp_json(sdk_spans(ok)), headers=auth)

    assert response.status_code == 200
    assert response.json() == {}


def status_of(response) -> Status:
    if response.headers["content-type"] == "application/json":
        return json_format.ParseDict(response.json(), Status())
    return Status.FromString(response.content)


@pytest.mark.parametrize("content_type", ["application/x-protobuf", "application/json"])
def test_errors_are_google_rpc_status_in_the_request_encoding(otlp_url, project, content_type):
    no_key = httpx.post(otlp_url, content=b"{}", headers={"Content-Type": content_type})
    assert no_key.status_code == 401
    assert status_of(no_key).code == 16  # UNAUTHENTICATED

    reader = {
        "Authorization": f"Bearer {make_key(project, scopes=['read'])}",
        "Content-Type": content_type,
    }
    forbidden = httpx.post(otlp_url, content=b"{}", headers=reader)
    assert forbidden.status_code == 403
    assert status_of(forbidden).code == 7  # PERMISSION_DENIED


def test_garbage_is_400_and_unknown_media_type_415(otlp_url, auth):
    garbage = httpx.post(
        otlp_url,
        content=b"\xff\x01garbage",
        headers={**auth, "Content-Type": "application/x-protobuf"},
    )
    assert garbage.status_code == 400
    assert "ExportTraceServiceRequest" in status_of(garbage).message

    bad_json = httpx.post(
        otlp_url,
        content=b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
        headers={**auth, "Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400

    text = httpx.post(otlp_url, content=b"hello", headers={**auth, "Content-Type": "text/plain"})
    assert text.status_code == 415


def test_gzip_json_export(otlp_url, auth, project):
    def ok(tracer):
        with tracer.start_as_current_span(
            "GET",
            kind=trace.SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.response.status_code": 200,
                "url.path": "/x/1",
            },
        ):
            pass

    body = gzip.compress(httpx.Request("POST", "/", json=to_otlp_json(sdk_spans(ok))).content)
    response = httpx.post(
        otlp_url,
        content=body,
        headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert response.status_code == 200
    assert ApiRequest.objects.get(project=project).endpoint == "/x/{id}"
