"""OTLP/HTTP traces: decode an ExportTraceServiceRequest into ingest events.

Server spans (kind SERVER) are the requests a service served; they become events with
the HTTP semantic conventions, old and new attribute names alike. Other span kinds are
skipped and counted. A server span without an HTTP method or status code is rejected
(reported in `partial_success`), never silently dropped.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from observability.ingest.errors import MalformedBody
from observability.ingest.events import (
    MAX_ATTRIBUTES_BYTES,
    Decoded,
    Event,
    EventError,
    field_and_reason,
)
from observability.ingest.routes import normalize_path

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# Semantic-convention attribute names, newest first.
METHOD_KEYS = ("http.request.method", "http.method")
STATUS_KEYS = ("http.response.status_code", "http.status_code")
PATH_KEYS = ("url.path", "http.target")
URL_KEYS = ("url.full", "http.url")
REQUEST_SIZE_KEYS = ("http.request.body.size", "http.request_content_length")
RESPONSE_SIZE_KEYS = ("http.response.body.size", "http.response_content_length")
ENVIRONMENT_KEYS = ("deployment.environment.name", "deployment.environment")
MAPPED_KEYS = {*METHOD_KEYS, *STATUS_KEYS, *PATH_KEYS, *URL_KEYS, *REQUEST_SIZE_KEYS,
               *RESPONSE_SIZE_KEYS, "http.route"}  # fmt: skip
# Event ids of spans: the same span exported twice is stored once.
SPAN_NAMESPACE = uuid.UUID("6c0f6b1e-3f7a-4bd4-9d0e-6a1f2c7e9b11")


def parse_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        if content_type == PROTOBUF:
            request.ParseFromString(body)
        else:
            json_format.ParseDict(
                _hex_ids_to_base64(msgspec.json.decode(body)), request, ignore_unknown_fields=True
            )
    except (DecodeError, json_format.ParseError, msgspec.DecodeError, UnicodeDecodeError,
            TypeError, ValueError) as exc:  # fmt: skip
        raise MalformedBody(f"Not a valid ExportTraceServiceRequest: {exc}") from exc
    return request


def decode(body: bytes, content_type: str) -> Decoded:
    """The OTLP door: an ExportTraceServiceRequest (protobuf or JSON) as events."""
    return decode_spans(parse_request(body, content_type))


def decode_spans(request: ExportTraceServiceRequest) -> Decoded:
    events: list[tuple[int, Event | EventError]] = []
    skipped = 0
    index = 0
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.kind != Span.SPAN_KIND_SERVER:
                    skipped += 1
                    continue
                events.append((index, _span_event(span, resource)))
                index += 1
    return Decoded(events, skipped)


def encode_response(content_type: str, rejected: int, message: str) -> bytes:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    return _encode(response, content_type)


def encode_status(content_type: str, code: int, message: str) -> bytes:
    """A google.rpc.Status body (the OTLP error body): code = 1, message = 2.

    Encoded by hand to spare a runtime dependency for a two-field message.
    """
    if content_type == JSON:
        return msgspec.json.encode({"code": code, "message": message})
    message_bytes = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(message_bytes)) + message_bytes


def _encode(message, content_type: str) -> bytes:
    if content_type == JSON:
        return json_format.MessageToJson(message, indent=None).encode()
    return message.SerializeToString()


def _span_event(span: Span, resource: dict) -> Event | EventError:
    attributes = _attributes(span.attributes)
    method = _first(attributes, METHOD_KEYS)
    status = _first(attributes, STATUS_KEYS)
    if method is None or status is None:
        missing = "http.request.method" if method is None else "http.response.status_code"
        return EventError(missing, f"Server span {span.name!r} has no {missing} attribute.")
    endpoint = attributes.get("http.route") or normalize_path(_path(attributes))
    fields = {
        "time": datetime.fromtimestamp(span.start_time_unix_nano / 1e9, UTC),
        "service": str(resource.get("service.name") or "unknown_service"),
        "endpoint": str(endpoint),
        "method": str(method),
        "status_code": status,
        "latency_ms": max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        "event_id": uuid.uuid5(SPAN_NAMESPACE, span.trace_id.hex() + span.span_id.hex()),
        "trace_id": span.trace_id.hex() or None,
        "span_id": span.span_id.hex() or None,
        "environment": str(_first(resource, ENVIRONMENT_KEYS) or ""),
        "host": str(resource.get("host.name") or ""),
        "error_message": _error_message(span),
        "request_bytes": _first(attributes, REQUEST_SIZE_KEYS),
        "response_bytes": _first(attributes, RESPONSE_SIZE_KEYS),
    }
    try:
        event = msgspec.convert(fields, Event)
    except msgspec.ValidationError as exc:
        return EventError(*field_and_reason(exc))
    extra = {key: value for key, value in attributes.items() if key not in MAPPED_KEYS}
    event.attributes = msgspec.Raw(_bounded_json(extra))
    return event


def _path(attributes: dict) -> str:
    """The request path: url.path or http.target, else the path of the full URL."""
    path = _first(attributes, PATH_KEYS)
    if path is None:
        path = urlsplit(str(_first(attributes, URL_KEYS) or "/")).path
    return str(path) or "/"


def _error_message(span: Span) -> str:
    for event in span.events:
        if event.name == "exception":
            details = _attributes(event.attributes)
            kind = details.get("exception.type", "")
            text = details.get("exception.message", "")
            return f"{kind}: {text}" if kind and text else str(kind or text)
    if span.status.code == Status.STATUS_CODE_ERROR:
        return span.status.message
    return ""


def _bounded_json(attributes: dict) -> bytes:
    """Span attributes as a JSON object within the attributes size limit."""
    encoded = msgspec.json.encode(attributes)
    while len(encoded) > MAX_ATTRIBUTES_BYTES and attributes:
        attributes.pop(max(attributes, key=lambda k: len(str(attributes[k]))))
        attributes["_truncated"] = True
        encoded = msgspec.json.encode(attributes)
    return encoded


def _attributes(pairs) -> dict:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def _first(attributes: dict, keys: tuple[str, ...]):
    for key in keys:
        if key in attributes:
            return attributes[key]
    return None


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _hex_ids_to_base64(document):
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping wants base64."""
    for resource_spans in _items(document, "resourceSpans", "resource_spans"):
        for scope_spans in _items(resource_spans, "scopeSpans", "scope_spans"):
            for span in _items(scope_spans, "spans"):
                _convert_ids(span)
                for link in _items(span, "links"):
                    _convert_ids(link)
    return document


def _items(container, *names) -> Iterator[dict]:
    if not isinstance(container, dict):
        raise MalformedBody("Expected a JSON object.")
    for name in names:
        values = container.get(name) or []
        if not isinstance(values, list):
            raise MalformedBody(f"`{name}` must be an array.")
        yield from values


def _convert_ids(span: dict) -> None:
    for name in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
        value = span.get(name)
        if isinstance(value, str) and value:
            try:
                span[name] = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError as exc:
                raise MalformedBody(f"`{name}` must be hexadecimal: {value!r}") from exc
