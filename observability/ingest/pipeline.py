"""From decoded events to stored rows: validation, endpoint cap, idempotent write."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from django.conf import settings
from django.db import connection
from django.utils import timezone
from prometheus_client import Counter

from observability.ingest import endpoints, writer
from observability.ingest.events import Event, EventError, TimeWindow, to_row
from observability.ingest.thresholds import apdex_thresholds

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


@dataclasses.dataclass
class IngestResult:
    accepted: int = 0  # valid events, stored now or already stored before
    duplicates: int = 0  # accepted events that were already stored
    rejected: int = 0
    overflowed: int = 0  # accepted events stored under the overflow endpoint
    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)


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
