"""Keeping rollups fresh and data within retention, on either backend.

Portable backend, hourly: hours that closed more than APM_ROLLUP_GRACE_S ago and lie
past the watermark are computed from raw rows, one day per transaction, advancing the
watermark; then hours marked dirty by the triggers (late, deleted or updated rows) are
recomputed. Daily works the same from the hourly rollups, for days whose hours are all
materialised. A recompute is DELETE + INSERT of the bucket range in one transaction, so
readers always see either the old or the new rollup, never a half.

TimescaleDB: refresh_continuous_aggregate() for the same relations, and the built-in
policies (refresh, retention, compression) do the rest on schedule.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection as default_connection
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from observability.analytics import backend, partitions, rollups
from observability.analytics.rollups import DAY, HOUR, STEP, floor_to

logger = logging.getLogger(__name__)

# Serialises refreshes across processes (pg_advisory_xact_lock key).
_REFRESH_LOCK = 0x61706D72  # "apmr"
# The portable refresh computes at most this much per transaction (bounded memory and
# lock time; progress survives an interruption).
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

# TimescaleDB compression of raw chunks: segment by project (every query filters on it),
# newest first inside a segment.
ENABLE_COMPRESSION = """
ALTER TABLE api_request SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'project_id', timescaledb.compress_orderby = 'time DESC')
"""
ADD_COMPRESSION_POLICY = """
SELECT add_compression_policy('api_request', compress_after => make_interval(days => %s))
"""


@dataclasses.dataclass
class RefreshReport:
    interval: str
    buckets: int = 0  # buckets recomputed
    watermark: datetime | None = None


def refresh(
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    now: datetime | None = None,
    connection: BaseDatabaseWrapper = default_connection,
) -> RefreshReport:
    """Bring the rollups of one interval up to date (or recompute [start, end))."""
    now = now or datetime.now(UTC)
    if backend.current(connection) == backend.TIMESCALE:
        return _refresh_timescale(connection, interval, start, end)
    horizon = _horizon(connection, interval, now)
    if start is not None or end is not None:
        first = (
            floor_to(interval, start)
            if start
            else horizon - timedelta(days=settings.APM_RAW_RETENTION_DAYS)
        )
        last = min(end or horizon, horizon)
        report = RefreshReport(interval, watermark=watermark(connection, interval))
        for chunk_start, chunk_end in _chunks(first, last, CHUNK[interval]):
            report.buckets += _recompute(connection, interval, chunk_start, chunk_end)
        return report
    return _refresh_incrementally(connection, interval, horizon)


def watermark(connection: BaseDatabaseWrapper, interval: str) -> datetime | None:
    """Portable: every bucket before this is materialised (None: nothing yet)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT materialized_until FROM apm_rollup_state WHERE interval = %s", [interval]
        )
        row = cursor.fetchone()
    return row[0] if row else None


def watermarks(connection: BaseDatabaseWrapper) -> dict[str, datetime]:
    """Portable: both watermarks in one query (the KPI queries need them on every request)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT interval, materialized_until FROM apm_rollup_state")
        return dict(cursor.fetchall())


def _horizon(connection: BaseDatabaseWrapper, interval: str, now: datetime) -> datetime:
    """The end of the buckets that may be materialised now."""
    if interval == HOUR:
        return rollups.hour_floor(now - timedelta(seconds=settings.APM_ROLLUP_GRACE_S))
    hourly = watermark(connection, HOUR)
    return rollups.day_floor(hourly) if hourly else rollups.day_floor(now) - timedelta(days=36500)


def _refresh_incrementally(connection, interval: str, horizon: datetime) -> RefreshReport:
    report = RefreshReport(interval)
    done = watermark(connection, interval)
    if done is None:
        # First refresh: everything raw retention can still hold.
        done = floor_to(interval, horizon - timedelta(days=settings.APM_RAW_RETENTION_DAYS))
    for chunk_start, chunk_end in _chunks(done, horizon, CHUNK[interval]):
        with transaction.atomic(using=connection.alias):
            _lock(connection)
            current = watermark(connection, interval)
            if current is not None and current >= chunk_end:
                continue  # another refresher got here first
            report.buckets += _recompute(connection, interval, chunk_start, chunk_end)
            _clear_dirty(connection, interval, chunk_start, chunk_end)
            _set_watermark(connection, interval, chunk_end)
    with transaction.atomic(using=connection.alias):
        _lock(connection)
        limit = watermark(connection, interval)
        for bucket in _take_dirty(connection, interval, limit):
            report.buckets += _recompute(connection, interval, bucket, bucket + STEP[interval])
    report.watermark = watermark(connection, interval)
    return report


def _recompute(connection, interval: str, start: datetime, end: datetime) -> int:
    """Recompute [start, end) of every rollup of the interval; returns the bucket count."""
    if start >= end:
        return 0
    relations = rollups.HOURLY if interval == HOUR else rollups.DAILY
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for rollup in relations:
            for statement in rollups.refresh_statements(rollup):
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
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_REFRESH_LOCK])


def _chunks(start: datetime, end: datetime, size: timedelta):
    while start < end:
        yield start, min(start + size, end)
        start += size


def _refresh_timescale(connection, interval: str, start, end) -> RefreshReport:
    relations = rollups.HOURLY if interval == HOUR else rollups.DAILY
    connection.ensure_connection()
    with connection.cursor() as cursor:
        for rollup in relations:
            # The procedure commits as it goes: it must run outside a transaction block
            # (Django's autocommit) and over the simple query protocol, that is with no
            # parameters, so its arguments are quoted by psycopg into the statement.
            statement = sql.SQL("CALL refresh_continuous_aggregate({}, {}, {})").format(
                sql.Literal(rollup.table), sql.Literal(start), sql.Literal(end)
            )
            cursor.execute(statement.as_string(connection.connection))
    return RefreshReport(interval)


# --- Retention -------------------------------------------------------------------------


@dataclasses.dataclass
class RetentionReport:
    partitions_dropped: list[str]
    rows_deleted: dict[str, int]


def apply_retention(
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    connection: BaseDatabaseWrapper = default_connection,
) -> RetentionReport:
    """Delete data older than the retention settings (portable backend; on TimescaleDB the
    retention policies are synced to the settings and run)."""
    now = now or datetime.now(UTC)
    raw_cutoff = now - timedelta(days=settings.APM_RAW_RETENTION_DAYS)
    if backend.current(connection) == backend.TIMESCALE:
        sync_timescale_policies(connection)
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            deleted = {} if dry_run else _delete_search_data(cursor, raw_cutoff)
        return RetentionReport([], deleted)
    report = RetentionReport(partitions.droppable_partitions(connection, raw_cutoff), {})
    cutoffs = [(partitions.DEFAULT_PARTITION, "time", raw_cutoff)]
    cutoffs += [(r.table, "bucket", now - timedelta(days=settings.APM_HOURLY_RETENTION_DAYS))
                for r in rollups.HOURLY]  # fmt: skip
    cutoffs += [(r.table, "bucket", now - timedelta(days=settings.APM_DAILY_RETENTION_DAYS))
                for r in rollups.DAILY]  # fmt: skip
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for table, column, cutoff in cutoffs:
            verb = (
                "SELECT count(*) FROM {} WHERE {} < %s"
                if dry_run
                else "DELETE FROM {} WHERE {} < %s"
            )
            cursor.execute(
                sql.SQL(verb).format(sql.Identifier(table), sql.Identifier(column)), [cutoff]
            )
            report.rows_deleted[table] = cursor.fetchone()[0] if dry_run else cursor.rowcount
        if not dry_run:
            partitions.drop_partitions(connection, report.partitions_dropped)
            cursor.execute("DELETE FROM apm_rollup_dirty WHERE bucket < %s", [raw_cutoff])
            report.rows_deleted.update(_delete_search_data(cursor, raw_cutoff))
    return report


# Search data follows its requests: links older than raw retention go, then documents
# and embeddings no request reads as any more.
DELETE_SEARCH_DATA = (
    ("apm_request_document", "DELETE FROM apm_request_document WHERE time < %s"),
    ("apm_document", "DELETE FROM apm_document AS d WHERE NOT EXISTS "
     "(SELECT 1 FROM apm_request_document AS r WHERE r.doc_hash = d.doc_hash)"),
    ("apm_embedding", "DELETE FROM apm_embedding AS e WHERE NOT EXISTS "
     "(SELECT 1 FROM apm_document AS d WHERE d.doc_hash = e.doc_hash)"),
)  # fmt: skip


def _delete_search_data(cursor, raw_cutoff: datetime) -> dict[str, int]:
    deleted = {}
    for table, statement in DELETE_SEARCH_DATA:
        cursor.execute(statement, [raw_cutoff] if "%s" in statement else [])
        deleted[table] = cursor.rowcount
    return deleted


def sync_timescale_policies(connection: BaseDatabaseWrapper) -> None:
    """Make TimescaleDB's retention and compression policies match the settings."""
    policies = [("api_request", settings.APM_RAW_RETENTION_DAYS)]
    policies += [(r.table, settings.APM_HOURLY_RETENTION_DAYS) for r in rollups.HOURLY]
    policies += [(r.table, settings.APM_DAILY_RETENTION_DAYS) for r in rollups.DAILY]
    with connection.cursor() as cursor:
        for relation, days in policies:
            cursor.execute("SELECT remove_retention_policy(%s, if_exists => true)", [relation])
            cursor.execute(
                "SELECT add_retention_policy(%s, drop_after => make_interval(days => %s))",
                [relation, days],
            )
        cursor.execute(ENABLE_COMPRESSION)
        cursor.execute("SELECT remove_compression_policy('api_request', if_exists => true)")
        cursor.execute(ADD_COMPRESSION_POLICY, [settings.APM_COMPRESS_AFTER_DAYS])


def prepare_partitions(
    now: datetime | None = None, connection: BaseDatabaseWrapper = default_connection
) -> list:
    """Portable backend: daily partitions for today and the days ahead."""
    if backend.current(connection) != backend.POSTGRES:
        return []
    return partitions.ensure_partitions_around(
        connection,
        now or datetime.now(UTC),
        days_back=0,
        days_ahead=settings.APM_PARTITIONS_AHEAD_DAYS,
    )
