"""Keeping the portable backend's rollups fresh.

Hourly: hours that closed more than APM_ROLLUP_GRACE_S ago and lie past the watermark
are computed from raw rows, one day per transaction, advancing the watermark; then hours
marked dirty by the triggers (late, deleted or updated rows) are recomputed. Daily works
the same from the hourly rollups, for days whose hours are all materialised. A
recompute is DELETE + INSERT of the bucket range in one transaction, so readers always
see either the old or the new rollup, never a half.

(TimescaleDB refreshes its continuous aggregates itself: see backend.Timescale.)
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from observability.analytics import rollups, sketches
from observability.analytics.rollups import DAY, HOUR, STEP, floor_to
from observability.locks import Lock, xact_lock

# At most this much is computed per transaction (bounded memory and lock time; progress
# survives an interruption).
CHUNK = {HOUR: timedelta(days=1), DAY: timedelta(days=31)}

# Recomputed hours change their days: mark the days that are already materialised.
MARK_DAYS_DIRTY = """
INSERT INTO apm_rollup_dirty (interval, bucket)
SELECT 'day', d
FROM generate_series(date_trunc('day', %(start)s::timestamptz, 'UTC'),
                     %(end)s::timestamptz - interval '1 microsecond', interval '1 day') AS d
WHERE d < (SELECT materialized_until FROM apm_rollup_state WHERE interval = 'day')
ON CONFLICT DO NOTHING
"""


@dataclasses.dataclass
class RefreshReport:
    interval: str
    buckets: int | None = 0  # buckets recomputed (None: unknown, TimescaleDB)
    watermark: datetime | None = None


def refresh(
    connection: BaseDatabaseWrapper,
    interval: str,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> RefreshReport:
    """Bring the rollups of one interval up to date, or recompute [start, end)."""
    horizon = _horizon(connection, interval, now)
    if start is None and end is None:
        return _refresh_incrementally(connection, interval, horizon)
    first = (
        floor_to(interval, start)
        if start
        else horizon - timedelta(days=settings.APM_RAW_RETENTION_DAYS)
    )
    last = min(end or horizon, horizon)
    report = RefreshReport(interval, watermark=watermarks(connection).get(interval))
    for chunk_start, chunk_end in _chunks(first, last, CHUNK[interval]):
        report.buckets += _recompute(connection, interval, chunk_start, chunk_end)
    return report


def watermarks(connection: BaseDatabaseWrapper) -> dict[str, datetime]:
    """Interval -> every bucket before it is materialised (absent: nothing yet)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT interval, materialized_until FROM apm_rollup_state")
        return dict(cursor.fetchall())


def _horizon(connection: BaseDatabaseWrapper, interval: str, now: datetime) -> datetime:
    """The end of the buckets that may be materialised now."""
    if interval == HOUR:
        return rollups.hour_floor(now - timedelta(seconds=settings.APM_ROLLUP_GRACE_S))
    hourly = watermarks(connection).get(HOUR)
    return rollups.day_floor(hourly) if hourly else rollups.day_floor(now) - timedelta(days=36500)


def _refresh_incrementally(connection, interval: str, horizon: datetime) -> RefreshReport:
    report = RefreshReport(interval)
    done = watermarks(connection).get(interval)
    if done is None:
        # First refresh: everything raw retention can still hold.
        done = floor_to(interval, horizon - timedelta(days=settings.APM_RAW_RETENTION_DAYS))
    for chunk_start, chunk_end in _chunks(done, horizon, CHUNK[interval]):
        with transaction.atomic(using=connection.alias):
            _lock(connection)
            current = watermarks(connection).get(interval)
            if current is not None and current >= chunk_end:
                continue  # another refresher got here first
            report.buckets += _recompute(connection, interval, chunk_start, chunk_end)
            _clear_dirty(connection, interval, chunk_start, chunk_end)
            _set_watermark(connection, interval, chunk_end)
    with transaction.atomic(using=connection.alias):
        _lock(connection)
        limit = watermarks(connection).get(interval)
        for bucket in _take_dirty(connection, interval, limit):
            report.buckets += _recompute(connection, interval, bucket, bucket + STEP[interval])
    report.watermark = watermarks(connection).get(interval)
    return report


def _recompute(connection, interval: str, start: datetime, end: datetime) -> int:
    """Recompute [start, end) of every rollup of the interval; returns the bucket count."""
    if start >= end:
        return 0
    store = sketches.of(connection)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for rollup in rollups.of_interval(interval):
            for statement in rollups.refresh_statements(rollup, store):
                cursor.execute(statement, {"start": start, "end": end})
        if interval == HOUR:
            # The days containing these hours must be recomputed when already materialised.
            cursor.execute(MARK_DAYS_DIRTY, {"start": start, "end": end})
    return int((end - start) / STEP[interval])


def _take_dirty(connection, interval: str, limit: datetime | None) -> list[datetime]:
    if limit is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM apm_rollup_dirty WHERE interval = %s AND bucket < %s RETURNING bucket",
            [interval, limit],
        )
        return sorted(row[0] for row in cursor.fetchall())


def _clear_dirty(connection, interval: str, start: datetime, end: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM apm_rollup_dirty WHERE interval = %s AND bucket >= %s AND bucket < %s",
            [interval, start, end],
        )


def _set_watermark(connection, interval: str, until: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO apm_rollup_state (interval, materialized_until) VALUES (%s, %s) "
            "ON CONFLICT (interval) DO UPDATE SET materialized_until = "
            "GREATEST(apm_rollup_state.materialized_until, EXCLUDED.materialized_until)",
            [interval, until],
        )


def _lock(connection) -> None:
    with connection.cursor() as cursor:
        xact_lock(cursor, Lock.ROLLUP_REFRESH)


def _chunks(start: datetime, end: datetime, size: timedelta):
    while start < end:
        yield start, min(start + size, end)
        start += size
