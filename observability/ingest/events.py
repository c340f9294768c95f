"""The ingest event: its JSON schema, its validation, and the row it becomes.

Hot path: msgspec decodes and type-checks each event straight from the request bytes
(no per-event DRF serializer); the few rules a schema cannot say (time window, byte
sizes, NUL characters) are checked in `to_row`. Every rejection names its field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from observability.ingest.errors import MalformedBody
from observability.ingest.routes import normalize_path
from observability.ingest.writer import jsonb_value

MAX_LATENCY_MS = 86_400_000
MAX_ERROR_MESSAGE_BYTES = 4096
MAX_ATTRIBUTES_BYTES = 8192
MAX_FUTURE = timedelta(minutes=5)

Text = Annotated[str, msgspec.Meta(max_length=255)]


class Event(msgspec.Struct, kw_only=True):
    # RFC 3339 string, or epoch milliseconds.
    time: datetime | int | float
    service: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    endpoint: Annotated[str, msgspec.Meta(min_length=1, max_length=512)] | None = None
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | None = None
    method: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{1,16}$")]
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    latency_ms: Annotated[float, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)]
    event_id: uuid.UUID | None = None
    trace_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{32}$")] | None = None
    span_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{16}$")] | None = None
    environment: Annotated[str, msgspec.Meta(max_length=64)] = ""
    host: Text = ""
    error_message: str = ""
    request_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    response_bytes: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # Kept as raw JSON text: checked to be an object and stored as-is, never re-encoded.
    attributes: msgspec.Raw = msgspec.Raw(b"{}")


class Envelope(msgspec.Struct):
    events: list[msgspec.Raw]


class EventsEnvelope(msgspec.Struct):
    events: list[Event]


_decode_valid_batch = msgspec.json.Decoder(list[Event] | EventsEnvelope).decode
_decode_body = msgspec.json.Decoder(list[msgspec.Raw] | Envelope).decode
_decode_event = msgspec.json.Decoder(Event).decode


class EventError(ValueError):
    """One event is invalid: `field` names what is wrong (or is "" for the whole event)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


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


def decode_rest(body: bytes, content_type: str) -> Decoded:
    """The REST batch door: a JSON array of events or {"events": [...]}."""
    return Decoded(list(enumerate(decode_batch(body))))


def decode_batch(body: bytes) -> list[Event | EventError]:
    """Every event of the body, decoded, or the error that makes it invalid.

    One msgspec call decodes a valid batch (the common case); only when that fails is
    the body split and each event decoded alone, to name every invalid one.
    """
    try:
        parsed = _decode_valid_batch(body)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return [_decode_or_error(raw) for raw in split_body(body)]
    return parsed.events if isinstance(parsed, EventsEnvelope) else parsed


def _decode_or_error(raw: msgspec.Raw) -> Event | EventError:
    try:
        return decode_event(raw)
    except EventError as error:
        return error


def split_body(body: bytes) -> list[msgspec.Raw]:
    """The raw JSON of each event: the body is an array of events or {"events": [...]}."""
    try:
        parsed = _decode_body(body)
    except msgspec.ValidationError as exc:
        raise MalformedBody(
            f'Expected a JSON array of events or {{"events": [...]}}: {exc}'
        ) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"Malformed JSON: {exc}") from exc
    return parsed.events if isinstance(parsed, Envelope) else parsed


def decode_event(raw: msgspec.Raw | bytes) -> Event:
    try:
        return _decode_event(raw)
    except msgspec.ValidationError as exc:
        raise EventError(*field_and_reason(exc)) from exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # cannot happen after split_body
        raise EventError("", f"Malformed JSON: {exc}") from exc


def to_row(event: Event, project_id: int, window: TimeWindow) -> tuple:
    """The `api_request` row for a decoded event, in the COLUMNS order of ingest.writer
    but for the last column, the service's Apdex threshold (added by the pipeline)."""
    moment = _event_time(event.time, window)
    endpoint = _endpoint(event)
    attributes = bytes(event.attributes)
    if not attributes.lstrip().startswith(b"{"):
        raise EventError("attributes", "Must be a JSON object.")
    if len(attributes) > MAX_ATTRIBUTES_BYTES:
        raise EventError("attributes", f"Must be at most {MAX_ATTRIBUTES_BYTES} bytes of JSON.")
    if b"\\u0000" in attributes:
        raise EventError("attributes", "Must not contain NUL characters (\\u0000).")
    if len(event.error_message.encode()) > MAX_ERROR_MESSAGE_BYTES:
        raise EventError("error_message", f"Must be at most {MAX_ERROR_MESSAGE_BYTES} bytes.")
    text_fields = (event.service, endpoint, event.environment, event.host, event.error_message)
    if any("\x00" in value for value in text_fields):
        raise EventError(_field_with_nul(event), "Must not contain NUL characters.")
    return (
        moment,
        project_id,
        event.service,
        endpoint,
        event.method.upper(),
        event.status_code,
        event.latency_ms,
        event.event_id or uuid.uuid4(),
        (event.trace_id or "").lower(),
        (event.span_id or "").lower(),
        event.environment,
        event.host,
        event.error_message,
        event.request_bytes,
        event.response_bytes,
        jsonb_value(attributes),
    )


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
    if event.path is not None:
        return normalize_path(event.path)
    raise EventError("endpoint", "Either `endpoint` (route template) or `path` is required.")


def _field_with_nul(event: Event) -> str:
    for name in ("service", "endpoint", "path", "environment", "host", "error_message"):
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
        return reason.split("`")[1], "This field is required."
    return "", reason
