"""Deleting analytics data past its retention (portable backend).

Raw requests go by whole daily partitions (instant) plus a DELETE in the default
partition; rollup rows by bucket. TimescaleDB runs retention policies instead
(backend.Timescale). Search data follows its requests: observability/ai/retention.py.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from observability.analytics import partitions, rollups

COUNT_OLDER = "SELECT count(*) FROM {table} WHERE {column} < %s"
DELETE_OLDER = "DELETE FROM {table} WHERE {column} < %s"


@dataclasses.dataclass
class RetentionReport:
    partitions_dropped: list[str] = dataclasses.field(default_factory=list)
    rows_deleted: dict[str, int] = dataclasses.field(default_factory=dict)
    # TimescaleDB: relation -> days its retention policy keeps.
    policies: dict[str, int] = dataclasses.field(default_factory=dict)


def raw_cutoff(now: datetime) -> datetime:
    return now - timedelta(days=settings.APM_RAW_RETENTION_DAYS)


def retention_days() -> dict[str, int]:
    """Relation -> days of data kept, from the settings."""
    days = {partitions.REQUEST_TABLE: settings.APM_RAW_RETENTION_DAYS}
    days |= {r.table: settings.APM_HOURLY_RETENTION_DAYS for r in rollups.HOURLY}
    days |= {r.table: settings.APM_DAILY_RETENTION_DAYS for r in rollups.DAILY}
    return days


def apply_portable(
    connection: BaseDatabaseWrapper, now: datetime, dry_run: bool
) -> RetentionReport:
    cutoff = raw_cutoff(now)
    report = RetentionReport(partitions.droppable_partitions(connection, cutoff))
    cutoffs = [(partitions.DEFAULT_PARTITION, "time", cutoff)]
    days = retention_days()
    cutoffs += [(r.table, "bucket", now - timedelta(days=days[r.table])) for r in rollups.ALL]
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for table, column, table_cutoff in cutoffs:
            statement = sql.SQL(COUNT_OLDER if dry_run else DELETE_OLDER).format(
                table=sql.Identifier(table), column=sql.Identifier(column)
            )
            cursor.execute(statement, [table_cutoff])
            report.rows_deleted[table] = cursor.fetchone()[0] if dry_run else cursor.rowcount
        if not dry_run:
            partitions.drop_partitions(connection, report.partitions_dropped)
            cursor.execute("DELETE FROM apm_rollup_dirty WHERE bucket < %s", [cutoff])
    return report
