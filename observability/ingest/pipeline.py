"""The ingest pipeline: every door (REST batch, OTLP, single record) runs the same steps.

read body -> decode -> size check -> rate tokens -> validate -> cap dimensions and add
Apdex thresholds -> store once (idempotent) -> the result. The doors differ only in the
content types they accept, how they decode their format and how they name an event in
an error. The answer is built only after the rows are committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest
from django.utils import timezone
from prometheus_client import Counter

from observability import ratelimit
from observability.error_groups import store as error_groups
from observability.error_groups.fingerprint import is_failure
from observability.ingest import cardinality, idempotency, otlp, writer
from observability.ingest.body import read_body
from observability.ingest.errors import (
    EmptyBatch,
    IngestRejected,
    InvalidEvents,
    PayloadTooLarge,
    RateLimited,
)
from observability.ingest.events import (
    Decoded,
    Event,
    EventError,
    Row,
    TimeWindow,
    decode_record,
    decode_rest,
    to_row,
)
from observability.ingest.thresholds import apdex_thresholds
from observability.models import ApiKey, RateBucket

INGESTED_EVENTS = Counter(
    "apm_ingest_events_total",
    "Events received by ingest, by source and outcome (stored, duplicate, rejected).",
    ["source", "outcome"],
)
SKIPPED_SPANS = Counter(
    "apm_otlp_spans_skipped_total", "OTLP spans not stored because they are not SERVER spans."
)


@dataclasses.dataclass(frozen=True)
class Door:
    source: str  # the `source` label of the metrics
    content_types: tuple[str, ...]
    decode: Callable[[bytes, str, int], Decoded]  # body, content type, project
    # How errors name an event: "events[3].status_code"; None: the record itself.
    label: str | None
    # Whether an event of this body may hold a NUL character, which PostgreSQL text
    # cannot store. JSON can only send one as the escape \u0000; OTLP text is cleaned.
    may_hold_nul: Callable[[bytes], bool]
    # OTLP: an export may hold no request at all (only client spans); REST: a mistake.
    empty_ok: bool = False


def _has_nul_escape(body: bytes) -> bool:
    return b"\\u0000" in body


REST = Door("rest", ("application/json",), decode_rest, "events", _has_nul_escape)
OTLP = Door("otlp", (otlp.PROTOBUF, otlp.JSON), otlp.decode, "spans", lambda body: False,
            empty_ok=True)  # fmt: skip
RECORD = Door("record", ("application/json",), decode_record, None, _has_nul_escape)


@dataclasses.dataclass
class IngestResult:
    accepted: int = 0  # valid events, stored now or already stored before
    duplicates: int = 0  # accepted events that were already stored
    rejected: int = 0
    overflowed: int = 0  # accepted events with a value moved to an overflow value
    skipped: int = 0  # OTLP spans that are not requests (not SERVER spans)
    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    rows: list[Row] = dataclasses.field(default_factory=list, repr=False)  # as stored

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in RESULT_FIELDS}

    @classmethod
    def from_dict(cls, saved: dict) -> IngestResult:
        return cls(**{name: saved[name] for name in RESULT_FIELDS})


RESULT_FIELDS = ("accepted", "duplicates", "rejected", "overflowed", "skipped", "errors")


def ingest(request: HttpRequest, door: Door, key: ApiKey, *, strict: bool) -> IngestResult:
    """Run one request through the pipeline; raises IngestRejected if nothing may be stored."""
    body = read_body(request, settings.APM_INGEST_MAX_BYTES, door.content_types)
    idempotency_key = idempotency.key_of(request)
    if idempotency_key is None:
        return _ingest(body, request.content_type, door, key, strict, claim=None)
    request_line = f"{door.source}?{request.META.get('QUERY_STRING', '')}"
    claim = idempotency.claim(key.project_id, idempotency_key, request_line, body)
    if claim.replay is not None:
        return IngestResult.from_dict(claim.replay)
    try:
        return _ingest(body, request.content_type, door, key, strict, claim)
    except IngestRejected:
        idempotency.release(claim)
        raise


def _ingest(body, content_type, door: Door, key: ApiKey, strict: bool, claim) -> IngestResult:
    decoded = door.decode(body, content_type, key.project_id)
    SKIPPED_SPANS.inc(decoded.skipped)
    result = IngestResult(skipped=decoded.skipped)
    if not decoded.events and door.empty_ok:
        return _completed(result, claim)
    _check_batch_size(len(decoded.events))
    _take_rate_tokens(key, len(decoded.events))
    window = TimeWindow.around(timezone.now(), settings.APM_RAW_RETENTION_DAYS)
    # The service's own threshold, also for a row whose service the cap moves to
    # overflow: its requests are still that service's.
    # (A service with a NUL character is refused by to_row, and cannot be looked up.)
    services = {e.service for _, e in decoded.events if not isinstance(e, EventError)}
    thresholds = apdex_thresholds(key.project_id, {s for s in services if "\x00" not in s})
    may_hold_nul = door.may_hold_nul(body)
    project_id = key.project_id  # read once: a model field's descriptor, per event otherwise
    rows, indexes, failed = [], [], {}
    for index, item in decoded.events:
        try:
            if isinstance(item, EventError):
                raise item
            threshold = thresholds.get(item.service)
            row = to_row(item, project_id, window, threshold, may_hold_nul)
            if is_failure(item.status_code, item.exception_type):
                failed[len(rows)] = item
            rows.append(row)
            indexes.append(index)
        except EventError as error:
            _reject(result, door, index, error)
    if strict and result.errors:
        raise InvalidEvents(result.errors)
    # The events commit together with their idempotency key's result (without one, the
    # writer's own transaction suffices: it also records the error groups' occurrences).
    with transaction.atomic() if claim else contextlib.nullcontext():
        _store(rows, indexes, failed, project_id, door, result, strict)
        return _completed(result, claim)


def _completed(result: IngestResult, claim) -> IngestResult:
    if claim is not None:
        idempotency.complete(claim, result.as_dict())
    return result


def _reject(result: IngestResult, door: Door, index: int, error: EventError) -> None:
    event = f"{door.label}[{index}]" if door.label else ""
    for field, message in error.fields.items():
        name = ".".join(part for part in (event, field) if part) or "non_field_errors"
        result.errors.setdefault(name, []).append(message)
    result.rejected += 1


def _error_groups(
    project_id: int, rows: list[Row], failed: dict[int, Event]
) -> tuple[dict[int, int], bool]:
    """Position of each failed row -> its error group (after the caps: the group's
    service and endpoint are the ones stored); and whether a group was new here."""
    if not failed:
        return {}, False
    failures = [(_failure(failed[n], rows[n]), rows[n]) for n in failed]
    ids, new = error_groups.assign(project_id, failures)
    return dict(zip(failed, ids, strict=True)), new


def _failure(event: Event, row: Row):
    return error_groups.failure(
        row, event.exception_type, event.exception_message, event.stacktrace, event.fingerprint
    )


def _check_batch_size(count: int) -> None:
    if count == 0:
        raise EmptyBatch("The batch holds no events.")
    if count > settings.APM_INGEST_MAX_EVENTS:
        raise PayloadTooLarge(
            f"{count} events in one request; the limit is {settings.APM_INGEST_MAX_EVENTS}."
        )


def _take_rate_tokens(key: ApiKey, count: int) -> None:
    wait = ratelimit.take(
        key.pk,
        RateBucket.INGEST,
        count,
        settings.APM_INGEST_RATE_LIMIT,
        max(settings.APM_INGEST_RATE_BURST, settings.APM_INGEST_MAX_EVENTS),
    )
    if wait:
        raise RateLimited("Ingest rate limit of this API key exceeded.", wait)


def _store(
    rows: list[Row], indexes: list[int], failed: dict[int, Event], project_id: int,
    door: Door, result: IngestResult, strict: bool,
) -> None:  # fmt: skip
    """Cap dimensions, add error groups, write the rows once each, count the outcome."""
    capped = cardinality.cap_rows(project_id, rows, door.source)
    rows = capped.rows
    groups, new_group = _error_groups(project_id, rows, failed)
    for n, group in groups.items():
        rows[n] = rows[n]._replace(error_group_id=group)

    def record_failures(stored: writer.Stored) -> None:
        new = [rows[n] for n in groups if n not in stored.unstorable and stored.is_new(rows[n])]
        error_groups.record(project_id, new)

    stored = writer.store_rows(
        connection, rows, all_or_nothing=strict, then=record_failures if groups else None
    )
    for position, reason in sorted(stored.unstorable.items()):
        _reject(result, door, indexes[position], EventError("", f"Cannot be stored: {reason}"))
    if strict and stored.unstorable:
        raise InvalidEvents(result.errors)
    accepted = rows
    if stored.unstorable:
        accepted = [row for n, row in enumerate(rows) if n not in stored.unstorable]
    if new_group:
        # A new group is listed, counted, as soon as its batch is answered (and its
        # opening alerted on); a known group's counts follow within seconds (the job).
        error_groups.fold()
    result.rows = accepted
    result.accepted = len(accepted)
    result.duplicates = len(accepted) - stored.new
    result.overflowed = capped.overflowed
    INGESTED_EVENTS.labels(door.source, "stored").inc(stored.new)
    INGESTED_EVENTS.labels(door.source, "duplicate").inc(result.duplicates)
    INGESTED_EVENTS.labels(door.source, "rejected").inc(result.rejected)
