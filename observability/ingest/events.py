"""The ingest event: its JSON schema, its validation, and the row it becomes.

Hot path: msgspec decodes and type-checks each event straight from the request bytes
(no per-event DRF serializer); the rules a schema cannot say (time window, byte sizes,
NUL characters, the attributes' shape) are checked in `to_row`. Whatever passes is
storable: every field fits its column. Every rejection names its field.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, NamedTuple

import msgspec

from apm_platform.http import OTHER_METHOD, STANDARD_METHODS, standard_method
from observability.ingest import jsonsplit
from observability.ingest.errors import MalformedBody
from observability.ingest.routes import normalize_path
from observability.ingest.writer import jsonb_value

MAX_LATENCY_MS = 86_400_000
MAX_ERROR_MESSAGE_BYTES = 4096
MAX_STACKTRACE_CHARS = 32_768
MAX_ENDPOINT_CHARS = 512
MAX_ATTRIBUTES_BYTES = 8192
MAX_ATTRIBUTES = 128  # keys, all levels together
MAX_ATTRIBUTE_DEPTH = 8  # levels of objects and arrays below the attributes object
MAX_BIGINT = 2**63 - 1
MAX_FUTURE = timedelta(minutes=5)
# Where a folded method's original is kept (OpenTelemetry's semantic conventions).
ORIGINAL_METHOD_KEY = "http.request.method_original"
# Attributes objects up to this size are checked once per worker and remembered (the
# last MEMO_ENTRIES of them: at most 2 MiB of keys and values).
MEMO_MAX_BYTES = 256
MEMO_ENTRIES = 4096

Text = Annotated[str, msgspec.Meta(max_length=255)]
Endpoint = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENDPOINT_CHARS)]
ByteCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_BIGINT)]
# \Z, not $: `$` also matches before a trailing newline.
Method = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_]{1,16}\Z")]
TraceId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{32}\Z")]
SpanId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{16}\Z")]


# gc=False: a batch's thousands of events are not tracked by the cycle collector, which
# otherwise ran on every batch and, promoting them, walked them again and again. They
# hold only strings, numbers, times and raw bytes: no cycle can form through them.
class Event(msgspec.Struct, kw_only=True, gc=False):
    # RFC 3339 string, or epoch milliseconds.
    time: datetime | int | float
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    endpoint: Endpoint | None = None
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None
    method: Method
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
    event_id: uuid.UUID | None = None
    trace_id: TraceId | None = None
    span_id: SpanId | None = None
    environment: Annotated[str, msgspec.Meta(max_length=64)] = ""
    host: Text = ""
    error_message: str = ""
    request_bytes: ByteCount | None = None
    response_bytes: ByteCount | None = None
    # Kept as raw JSON text: checked, and stored as sent unless the method is folded.
    attributes: msgspec.Raw = msgspec.Raw(b"{}")
    # What failed, for error grouping (observability/error_groups/): not stored per
    # request, but the exception's "type: message" becomes error_message when that is empty.
    exception_type: Text = ""
    exception_message: Annotated[str, msgspec.Meta(max_length=MAX_ERROR_MESSAGE_BYTES)] = ""
    stacktrace: Annotated[str, msgspec.Meta(max_length=MAX_STACKTRACE_CHARS)] = ""
    fingerprint: Text = ""  # the client's own grouping key, which wins


class Row(NamedTuple):
    """One `api_request` row, in the column order of the writer's COPY."""

    time: datetime
    project_id: int
    service: str
    endpoint: str
    method: str
    status_code: int
    latency_ms: float
    event_id: uuid.UUID
    trace_id: str
    span_id: str
    environment: str
    host: str
    error_message: str
    request_bytes: int | None
    response_bytes: int | None
    attributes: bytes  # jsonb in its binary wire form (writer.jsonb_value)
    apdex_t_ms: float | None = None  # the service's Apdex T, added by the pipeline
    error_group_id: int | None = None  # a failed request's group, added by the pipeline


# Row(...) parses its arguments in Python: this builds the same tuple at a third of the
# cost, once per event on the hot path.
_new_row = functools.partial(tuple.__new__, Row)


class Envelope(msgspec.Struct):
    events: list[msgspec.Raw]


class EventsEnvelope(msgspec.Struct):
    events: list[Event]


_decode_valid_batch = msgspec.json.Decoder(list[Event] | EventsEnvelope).decode
_decode_body = msgspec.json.Decoder(list[msgspec.Raw] | Envelope).decode
_decode_event = msgspec.json.Decoder(Event).decode


class EventError(ValueError):
    """One event is invalid: `field` names what is wrong (or is "" for the whole event);
    `fields` has every (field, reason) found, when there are several."""

    def __init__(self, field: str, message: str, more: dict[str, str] | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.fields = {field: message, **(more or {})}


@dataclass(frozen=True)
class TimeWindow:
    """Event times accepted now: not older than raw retention, not far in the future."""

    earliest: datetime
    latest: datetime

    @classmethod
    def around(cls, now: datetime, retention_days: int) -> TimeWindow:
        return cls(now - timedelta(days=retention_days), now + MAX_FUTURE)


@dataclass
class Decoded:
    """A request body as events: (index in the request, the event or why it is invalid)."""

    events: list[tuple[int, Event | EventError]]
    skipped: int = 0  # OTLP: spans that are not requests served (not SERVER spans)


def decode_rest(body: bytes, content_type: str, project_id: int) -> Decoded:
    """The REST batch door: a JSON array of events or {"events": [...]}."""
    return Decoded(list(enumerate(decode_batch(body))))


def decode_record(body: bytes, content_type: str, project_id: int) -> Decoded:
    """The single-record door: one event as a JSON object."""
    if body.lstrip()[:1] != b"{":
        raise MalformedBody("Expected a JSON object: one request record.")
    return Decoded([(0, _decode_or_error(body))])


def decode_batch(body: bytes) -> list[Event | EventError]:
    """Every event of the body, decoded, or the error that makes it invalid.

    One msgspec call decodes a valid batch (the common case); only when that fails is
    the body split and each event decoded alone, to name every invalid one.
    """
    try:
        parsed = _decode_valid_batch(body)
    except (
        msgspec.ValidationError,
        msgspec.DecodeError,
        UnicodeDecodeError,
        RecursionError,
    ) as exc:
        events = split_body(body)
        try:
            return [_decode_or_error(raw) for raw in events]
        except MalformedBody as syntax:  # in one event: the document is malformed
            raise MalformedBody(f"Malformed JSON: {exc}") from syntax
    return parsed.events if isinstance(parsed, EventsEnvelope) else parsed


def _decode_or_error(raw: bytes) -> Event | EventError:
    try:
        return decode_event(raw)
    except EventError as error:
        return error


def split_body(body: bytes) -> list[bytes]:
    """The raw JSON of each event: the body is an array of events or {"events": [...]}."""
    try:
        parsed = _decode_body(body)
    except msgspec.ValidationError as exc:
        raise MalformedBody(
            f'Expected a JSON array of events or {{"events": [...]}}: {exc}'
        ) from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        return _split_without_decoding(body, exc)
    return parsed.events if isinstance(parsed, Envelope) else parsed


def _split_without_decoding(body: bytes, error: Exception) -> list[bytes]:
    """A body the decoder refused: split it into events by its structure alone. If the
    fault lies in one value (a bad escape, a value too deep), only that event is
    invalid; a fault of the document's syntax makes the whole body malformed."""
    try:
        top = jsonsplit.members(body)
        if body.lstrip()[:1] == b"{":
            top = jsonsplit.members(dict(top).get(b'"events"', b""))
    except jsonsplit.NotSplittable as exc:
        raise MalformedBody(f"Malformed JSON: {error}") from exc
    return [value for _, value in top]


def decode_event(raw: bytes) -> Event:
    """One event; raises EventError naming its field, MalformedBody for bad syntax."""
    try:
        return _decode_event(raw)
    except msgspec.ValidationError as exc:
        raise _invalid_fields(raw, *field_and_reason(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _malformed_field(raw, exc) from exc


REQUIRED = "This field is required."
REQUIRED_FIELDS = ("time", "service", "method", "status_code", "latency_ms")


def _invalid_fields(raw: bytes, field: str, reason: str) -> EventError:
    """Every field of the event that is missing or invalid (msgspec stops at the first):
    each value decoded alone against its field's type. Only on the failure path."""
    try:
        values = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return EventError(field, reason)  # not an object of fields: what msgspec said
    problems = {name: REQUIRED for name in REQUIRED_FIELDS if name not in values}
    if not values.keys() & {"endpoint", "path"}:
        problems["endpoint"] = REQUIRED
    for name, kind in _FIELD_TYPES.items():
        if name in values:
            try:
                msgspec.json.decode(values[name], type=kind)
            except msgspec.ValidationError as exc:
                problems[name] = field_and_reason(exc)[1]
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                problems[name] = "Is not storable JSON."
    if not problems:  # found by msgspec only in context: report what it said
        return EventError(field, reason)
    first, *rest = problems
    return EventError(first, problems[first], {name: problems[name] for name in rest})


_FIELD_TYPES = {field.encode_name: field.type for field in msgspec.structs.fields(Event)}


def _malformed_field(raw: bytes, error: Exception) -> EventError | MalformedBody:
    """The first field whose value cannot be decoded, found by decoding each one alone;
    MalformedBody if no value is at fault (the JSON's syntax is)."""
    try:
        fields = jsonsplit.members(raw)
    except jsonsplit.NotSplittable:
        return MalformedBody(f"Malformed JSON: {error}")
    for key, value in fields:
        if isinstance(key, int):
            break  # an array, not an event object: the syntax is at fault
        try:
            name = msgspec.json.decode(key, type=str)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            return EventError("", "A field name cannot be decoded.")
        try:
            msgspec.json.decode(value)
        except RecursionError:
            return EventError(name, "Is nested too deeply.")
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return EventError(name, f"Is not storable JSON: {exc}")
    return MalformedBody(f"Malformed JSON: {error}")


def to_row(
    event: Event, project_id: int, window: TimeWindow, apdex_t_ms: float | None = None,
    may_hold_nul: bool = True,
) -> Row:  # fmt: skip
    """The `api_request` row for a decoded event. `may_hold_nul=False` when the body
    cannot hold a NUL character (JSON without the escape \u0000): no field is searched."""
    moment = _event_time(event.time, window)
    endpoint = _endpoint(event)
    error_message = event.error_message
    if not error_message and (event.exception_type or event.exception_message):
        error_message = exception_text(event)
    # Four bytes at most per character: only a long message needs encoding to be sure.
    too_long = len(error_message) * 4 > MAX_ERROR_MESSAGE_BYTES
    if too_long and len(error_message.encode()) > MAX_ERROR_MESSAGE_BYTES:
        raise EventError("error_message", f"Must be at most {MAX_ERROR_MESSAGE_BYTES} bytes.")
    if may_hold_nul and _field_with_nul(event):
        raise EventError(_field_with_nul(event), "Must not contain NUL characters.")
    method = event.method
    if method not in STANDARD_METHODS:  # most clients send a standard method in capitals
        method = standard_method(method)
    folded_method = event.method if method == OTHER_METHOD else None
    attributes = bytes(event.attributes)
    check = _stored_attributes_memo if len(attributes) <= MEMO_MAX_BYTES else stored_attributes
    attributes = check(attributes, folded_method, may_hold_nul)
    return _new_row((
        moment,
        project_id,
        event.service,
        endpoint,
        method,
        event.status_code,
        event.latency_ms,
        event.event_id or uuid.uuid4(),
        (event.trace_id or "").lower(),
        (event.span_id or "").lower(),
        event.environment,
        event.host,
        error_message,
        event.request_bytes,
        event.response_bytes,
        attributes,
        apdex_t_ms,
        None,  # error_group_id
    ))  # fmt: skip


def stored_attributes(
    attributes: bytes, folded_method: str | None = None, may_hold_nul: bool = True
) -> bytes:
    """The attributes as stored (jsonb's wire form, see writer.jsonb_value): a JSON object
    within the limits, every value storable in jsonb. A method folded into `_OTHER`
    (`folded_method`) is kept in them under its semantic key. `may_hold_nul=False`: the
    body holds no escape \\u0000, so no value can hold a NUL character."""
    if len(attributes) > MAX_ATTRIBUTES_BYTES:
        raise EventError("attributes", f"Must be at most {MAX_ATTRIBUTES_BYTES} bytes of JSON.")
    # The common case: an object of plain values, decoded as such in one call. Only
    # nested values, or a NUL character (sent as the escape \u0000), need a walk.
    value = _flat_attributes(attributes)
    if value is None or (may_hold_nul and b"\\u0000" in attributes):
        value = _any_attributes(attributes)
        _check_attribute_values(value)
    elif len(value) > MAX_ATTRIBUTES:
        raise EventError("attributes", f"Must have at most {MAX_ATTRIBUTES} keys.")
    if folded_method not in (None, OTHER_METHOD):
        value[ORIGINAL_METHOD_KEY] = folded_method
        return jsonb_value(msgspec.json.encode(value))
    return jsonb_value(attributes)


_decode_flat_attributes = msgspec.json.Decoder(dict[str, str | int | float | bool | None]).decode


def _flat_attributes(attributes: bytes) -> dict | None:
    """The attributes if they are an object of plain values, else None."""
    try:
        return _decode_flat_attributes(attributes)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None  # nested, or not storable: _any_attributes tells which


def _any_attributes(attributes: bytes) -> dict:
    try:
        value = msgspec.json.decode(attributes)
    except RecursionError as exc:
        raise EventError("attributes", "Is nested too deeply.") from exc
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # Lone surrogates, numbers beyond a double's range: jsonb cannot hold them.
        raise EventError("attributes", f"Is not storable JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise EventError("attributes", "Must be a JSON object.")
    return value


# Services send the same few small attributes objects again and again (a region, a
# version): each is decoded and checked once per worker, not once per event. Invalid
# ones raise, and are not remembered.
_stored_attributes_memo = functools.lru_cache(maxsize=MEMO_ENTRIES)(stored_attributes)


def _check_attribute_values(attributes: dict) -> None:
    """Depth, key count and NUL characters, in one pass without recursion."""
    keys = 0
    pending: list[tuple[object, int]] = [(attributes, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            keys += len(value)
            if any("\x00" in key for key in value):
                raise EventError("attributes", "Must not contain NUL characters.")
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            if isinstance(value, str) and "\x00" in value:
                raise EventError("attributes", "Must not contain NUL characters.")
            continue
        if depth >= MAX_ATTRIBUTE_DEPTH and children:
            raise EventError("attributes", f"Must be nested at most {MAX_ATTRIBUTE_DEPTH} deep.")
        pending.extend((child, depth + 1) for child in children)
    if keys > MAX_ATTRIBUTES:
        raise EventError("attributes", f"Must have at most {MAX_ATTRIBUTES} keys.")


def _event_time(value: datetime | float, window: TimeWindow) -> datetime:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        try:
            moment = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise EventError("time", "Is not a valid epoch time in milliseconds.") from exc
    if moment < window.earliest:
        raise EventError("time", "Is older than the raw data retention.")
    if moment > window.latest:
        raise EventError("time", "Is more than 5 minutes in the future.")
    return moment


def _endpoint(event: Event) -> str:
    if event.endpoint is not None:
        return event.endpoint
    if event.path is None:
        raise EventError("endpoint", "Either `endpoint` (route template) or `path` is required.")
    endpoint = normalize_path(event.path)
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        raise EventError("path", f"Its route would be longer than {MAX_ENDPOINT_CHARS} characters.")
    return endpoint


def exception_text(event: Event) -> str:
    """ "Type: message" of the event's exception ("" without one)."""
    parts = [event.exception_type, event.exception_message]
    text = ": ".join(part for part in parts if part).encode()[:MAX_ERROR_MESSAGE_BYTES]
    return text.decode(errors="ignore")  # not a character cut in half


def _field_with_nul(event: Event) -> str:
    names = ("service", "endpoint", "path", "environment", "host", "error_message",
             "exception_type", "exception_message", "stacktrace", "fingerprint")  # fmt: skip
    for name in names:
        value = getattr(event, name)
        if value and "\x00" in value:
            return name
    return ""


def field_and_reason(error: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.status_code`" -> ("status_code", ...)."""
    reason, marker, location = str(error).partition(" - at `$")
    if marker:
        return location.rstrip("`").lstrip("."), reason
    if reason.startswith("Object missing required field `"):
        return reason.split("`")[1], REQUIRED
    return "", reason
