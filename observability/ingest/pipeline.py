"""The ingest pipeline: every door (REST batch, OTLP) runs the same steps.

read body -> decode -> size check -> rate tokens -> validate -> cap endpoints and add
Apdex thresholds -> store once (idempotent) -> the result. The doors differ only in the
content types they accept and how they decode their format. The answer is built only
after the rows are committed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import connection
from django.http import HttpRequest
from django.utils import timezone
from prometheus_client import Counter

from observability.ingest import endpoints, otlp, ratelimit, writer
from observability.ingest.body import read_body
from observability.ingest.errors import EmptyBatch, InvalidEvents, PayloadTooLarge, RateLimited
from observability.ingest.events import Decoded, Event, EventError, TimeWindow, decode_rest, to_row
from observability.ingest.thresholds import apdex_thresholds
from observability.models import ApiKey

INGESTED_EVENTS = Counter(
    "apm_ingest_events_total",
    "Events received by ingest, by source and outcome (stored, duplicate, rejected).",
    ["source", "outcome"],
)
OVERFLOW_EVENTS = Counter(
    "apm_ingest_overflow_events_total",
    "Events stored under the overflow endpoint because their service hit the endpoint cap.",
    ["source"],
)
SKIPPED_SPANS = Counter(
    "apm_otlp_spans_skipped_total", "OTLP spans not stored because they are not SERVER spans."
)


@dataclasses.dataclass(frozen=True)
class Door:
    source: str  # the `source` label of the metrics
    content_types: tuple[str, ...]
    decode: Callable[[bytes, str], Decoded]
    # OTLP: an export may hold no request at all (only client spans); REST: a mistake.
    empty_ok: bool


REST = Door("rest", ("application/json",), decode_rest, empty_ok=False)
OTLP = Door("otlp", (otlp.PROTOBUF, otlp.JSON), otlp.decode, empty_ok=True)


@dataclasses.dataclass
class IngestResult:
    accepted: int = 0  # valid events, stored now or already stored before
    duplicates: int = 0  # accepted events that were already stored
    rejected: int = 0
    overflowed: int = 0  # accepted events stored under the overflow endpoint
    skipped: int = 0  # OTLP spans that are not requests (not SERVER spans)
    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def ingest(request: HttpRequest, door: Door, key: ApiKey, *, strict: bool) -> IngestResult:
    """Run one request through the pipeline; raises IngestRejected if nothing may be stored."""
    body = read_body(request, settings.APM_INGEST_MAX_BYTES, door.content_types)
    decoded = door.decode(body, request.content_type)
    SKIPPED_SPANS.inc(decoded.skipped)
    result = IngestResult(skipped=decoded.skipped)
    if not decoded.events and door.empty_ok:
        return result
    _check_batch_size(len(decoded.events))
    _take_rate_tokens(key, len(decoded.events))
    rows = validate(decoded.events, key.project_id, result)
    if strict and result.errors:
        raise InvalidEvents(result.errors)
    return store(rows, key.project_id, door.source, result)


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
        count,
        settings.APM_INGEST_RATE_LIMIT,
        max(settings.APM_INGEST_RATE_BURST, settings.APM_INGEST_MAX_EVENTS),
    )
    if wait:
        raise RateLimited("Ingest rate limit of this API key exceeded.", wait)


def validate(
    items: Iterable[tuple[int, Event | EventError]], project_id: int, result: IngestResult
) -> list[tuple]:
    """Rows of the valid events; each invalid one is counted and described in `result`."""
    window = TimeWindow.around(timezone.now(), settings.APM_RAW_RETENTION_DAYS)
    rows = []
    for index, item in items:
        try:
            if isinstance(item, EventError):
                raise item
            rows.append(to_row(item, project_id, window))
        except EventError as error:
            field = f"events[{index}].{error.field}" if error.field else f"events[{index}]"
            result.errors.setdefault(field, []).append(error.message)
            result.rejected += 1
    return rows


def store(rows: list[tuple], project_id: int, source: str, result: IngestResult) -> IngestResult:
    """Cap endpoints, add Apdex thresholds, write the rows once each, record the outcome."""
    rows = complete_rows(rows, project_id)
    result.overflowed = sum(row[3] == endpoints.OVERFLOW_ENDPOINT for row in rows)
    OVERFLOW_EVENTS.labels(source).inc(result.overflowed)
    stored = writer.store_rows(connection, rows)
    result.accepted = len(rows)
    result.duplicates = len(rows) - stored
    INGESTED_EVENTS.labels(source, "stored").inc(stored)
    INGESTED_EVENTS.labels(source, "duplicate").inc(result.duplicates)
    INGESTED_EVENTS.labels(source, "rejected").inc(result.rejected)
    return result


def complete_rows(rows: list[tuple], project_id: int) -> list[tuple]:
    """Rows from to_row, with over-cap endpoints renamed and each service's Apdex T added."""
    thresholds = apdex_thresholds(project_id, {row[2] for row in rows})
    overflow = endpoints.overflowing(
        project_id, {(row[2], row[3]) for row in rows}, settings.APM_ENDPOINT_CARDINALITY_CAP
    )
    if not overflow:
        return [(*row, thresholds[row[2]]) for row in rows]
    return [
        (*row[:3], endpoints.OVERFLOW_ENDPOINT, *row[4:], thresholds[row[2]])
        if (row[2], row[3]) in overflow
        else (*row, thresholds[row[2]])
        for row in rows
    ]
