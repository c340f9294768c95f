"""OTLP/HTTP traces: decode an ExportTraceServiceRequest into ingest events.

Every server span (kind SERVER) is an operation a service served, and becomes a record:
- HTTP spans (an HTTP method attribute) by the HTTP semantic conventions, old and new
  attribute names alike;
- RPC spans (`rpc.system`, e.g. gRPC): endpoint `rpc.service/rpc.method`, method
  `_OTHER`, status from `rpc.grpc.status_code` through GRPC_HTTP_STATUS (the mapping
  grpc-gateway uses), else from the span status;
- any other server span (a message consumer, a job): endpoint from the span name,
  method `_OTHER`, status 500 if the span status is ERROR, else 200.
Other span kinds are skipped and counted. Span attributes go to `attributes` within the
ingest limits, truncated as OpenTelemetry's attribute limits truncate (marked
`_truncated`), never rejected for their size.
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
    MAX_ATTRIBUTE_DEPTH,
    MAX_ATTRIBUTES,
    MAX_ATTRIBUTES_BYTES,
    MAX_ENDPOINT_CHARS,
    MAX_ERROR_MESSAGE_BYTES,
    MAX_STACKTRACE_CHARS,
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
# Event ids of spans: the same span exported twice to a project is stored once.
SPAN_NAMESPACE = uuid.UUID("6c0f6b1e-3f7a-4bd4-9d0e-6a1f2c7e9b11")
OTHER_METHOD = "_OTHER"
# gRPC status code -> the HTTP status recorded (grpc-gateway's mapping; unknown: 500).
GRPC_HTTP_STATUS = {
    0: 200,  # OK
    1: 499,  # CANCELLED (the client went away)
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}
TRUNCATED_KEY = "_truncated"


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
    except RecursionError as exc:
        raise MalformedBody("Not a valid ExportTraceServiceRequest: nested too deeply.") from exc
    return request


def decode(body: bytes, content_type: str, project_id: int) -> Decoded:
    """The OTLP door: an ExportTraceServiceRequest (protobuf or JSON) as events."""
    return decode_spans(parse_request(body, content_type), project_id)


def decode_spans(request: ExportTraceServiceRequest, project_id: int) -> Decoded:
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
                events.append((index, _span_event(span, resource, project_id)))
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


def _span_event(span: Span, resource: dict, project_id: int) -> Event | EventError:
    attributes = _attributes(span.attributes)
    endpoint, method, status = _operation(span, attributes)
    span_key = f"{project_id}:{span.trace_id.hex()}{span.span_id.hex()}"
    fields = {
        "time": datetime.fromtimestamp(span.start_time_unix_nano / 1e9, UTC),
        "service": str(resource.get("service.name") or "unknown_service"),
        "endpoint": endpoint,
        "method": method,
        "status_code": status,
        "latency_ms": max(0, span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        "event_id": uuid.uuid5(SPAN_NAMESPACE, span_key),
        "trace_id": span.trace_id.hex() or None,
        "span_id": span.span_id.hex() or None,
        "environment": str(_first(resource, ENVIRONMENT_KEYS) or ""),
        "host": str(resource.get("host.name") or ""),
        **_exception(span),
        "request_bytes": _first(attributes, REQUEST_SIZE_KEYS),
        "response_bytes": _first(attributes, RESPONSE_SIZE_KEYS),
    }
    try:
        event = msgspec.convert(fields, Event)
    except msgspec.ValidationError as exc:
        return EventError(*field_and_reason(exc))
    extra = {key: value for key, value in attributes.items() if key not in MAPPED_KEYS}
    event.attributes = msgspec.Raw(bounded_json(extra))
    return event


def _operation(span: Span, attributes: dict) -> tuple[str, str, object]:
    """(endpoint, method, status) of an HTTP, RPC or other server span."""
    method = _first(attributes, METHOD_KEYS)
    if method is not None:
        endpoint = attributes.get("http.route") or normalize_path(_path(attributes))
        status = _first(attributes, STATUS_KEYS)
        return str(endpoint), str(method), _span_status(span) if status is None else status
    if "rpc.system" in attributes:
        service, name = attributes.get("rpc.service"), attributes.get("rpc.method")
        endpoint = f"{service}/{name}" if service and name else _name(span)
        code = attributes.get("rpc.grpc.status_code")
        status = GRPC_HTTP_STATUS.get(code, 500) if isinstance(code, int) else _span_status(span)
        return endpoint, OTHER_METHOD, status
    return _name(span), OTHER_METHOD, _span_status(span)


def _span_status(span: Span) -> int:
    return 500 if span.status.code == Status.STATUS_CODE_ERROR else 200


def _name(span: Span) -> str:
    return _text(span.name)[:MAX_ENDPOINT_CHARS] or "unnamed_span"


def _path(attributes: dict) -> str:
    """The request path: url.path or http.target, else the path of the full URL."""
    path = _first(attributes, PATH_KEYS)
    if path is None:
        path = urlsplit(str(_first(attributes, URL_KEYS) or "/")).path
    return str(path) or "/"


def _exception(span: Span) -> dict:
    """The span's exception for error grouping (the event's error_message is made of
    its type and message), or else the span status' message.

    The last exception event is the one that ended the span when several were recorded.
    Over-long values are cut rather than refused: a deep stack trace must not cost the
    span.
    """
    for event in reversed(span.events):
        if event.name == "exception":
            details = _attributes(event.attributes)
            return {
                "exception_type": _cut(details.get("exception.type"), 255),
                "exception_message": _cut(
                    details.get("exception.message"), MAX_ERROR_MESSAGE_BYTES
                ),
                "stacktrace": _cut(details.get("exception.stacktrace"), MAX_STACKTRACE_CHARS),
            }
    if span.status.code == Status.STATUS_CODE_ERROR:
        message = _text(span.status.message).encode()[:MAX_ERROR_MESSAGE_BYTES]
        return {"error_message": message.decode(errors="ignore")}  # no character cut in half
    return {}


def _cut(value, characters: int) -> str:
    return _text(str(value or ""))[:characters]


def bounded_json(attributes: dict) -> bytes:
    """The attributes as a JSON object within the ingest limits, in one pass: those that
    do not fit (bytes or count) are dropped, as OpenTelemetry's attribute limits do, and
    `_truncated` says so."""
    budget = MAX_ATTRIBUTES_BYTES - len(b'{,"_truncated":true}')
    kept: dict = {}
    used = keys = 0
    truncated = False
    for key, value in attributes.items():
        size = len(msgspec.json.encode(key)) + len(msgspec.json.encode(value)) + 2
        count = 1 + _nested_keys(value)
        if used + size > budget or keys + count > MAX_ATTRIBUTES - 1:
            truncated = True
            continue
        kept[key] = value
        used, keys = used + size, keys + count
    if truncated:
        kept[TRUNCATED_KEY] = True
    return msgspec.json.encode(kept)


def _nested_keys(value) -> int:
    count, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            count += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return count


def _attributes(pairs, depth: int = 0) -> dict:
    return {_text(pair.key): _value(pair.value, depth) for pair in pairs}


def _value(value: AnyValue, depth: int):
    """An attribute value as JSON data; containers deeper than the limit become None."""
    kind = value.WhichOneof("value")
    if kind in ("array_value", "kvlist_value") and depth >= MAX_ATTRIBUTE_DEPTH:
        return None
    if kind == "array_value":
        return [_value(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values, depth + 1)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "string_value":
        return _text(value.string_value)
    return getattr(value, kind) if kind else None


def _text(text: str) -> str:
    """PostgreSQL text cannot hold NUL: replaced, so one odd attribute costs no span."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


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
