"""Daily range partitions of `api_request` (portable backend).

A DEFAULT partition catches rows no daily partition covers (data older than the
partitions, or a day the maintenance job has not prepared yet), so a write never fails
for want of a partition. Creating the partition for a day that already has rows in the
default partition moves those rows into it in the same transaction.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from observability.locks import Lock, xact_lock

REQUEST_TABLE = "api_request"
DEFAULT_PARTITION = f"{REQUEST_TABLE}_default"
_PARTITION_NAME = re.compile(rf"^{REQUEST_TABLE}_p(\d{{8}})$")


def partition_name(day: date) -> str:
    return f"{REQUEST_TABLE}_p{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def existing_partition_days(connection: BaseDatabaseWrapper) -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s)",
            [REQUEST_TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    days = set()
    for name in names:
        match = _PARTITION_NAME.match(name)
        if match:
            days.add(datetime.strptime(match.group(1), "%Y%m%d").date())
    return days


def ensure_daily_partitions(connection: BaseDatabaseWrapper, first: date, last: date) -> list[date]:
    """Create the partitions for days first..last (inclusive); return the days created."""
    wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    missing = sorted(set(wanted) - existing_partition_days(connection))
    created = []
    for day in missing:
        with transaction.atomic(using=connection.alias):
            with connection.cursor() as cursor:
                xact_lock(cursor, Lock.PARTITIONS)
            if day in existing_partition_days(connection):  # another process won the race
                continue
            _create_partition(connection, day)
            created.append(day)
    return created


# Named DDL templates; identifiers and bounds are filled in by psycopg.sql.
DEFAULT_HAS_ROWS = "SELECT EXISTS (SELECT 1 FROM {default} WHERE time >= {start} AND time < {end})"
CREATE_PARTITION = (
    "CREATE TABLE {partition} PARTITION OF {parent} FOR VALUES FROM ({start}) TO ({end})"
)
# Rows for the day already sit in the default partition: build the day's table beside
# the parent, move the rows into it, then attach it (one transaction).
MOVE_ROWS_OUT_OF_DEFAULT = (
    "CREATE TABLE {partition} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
    "WITH moved AS (DELETE FROM {default} WHERE time >= {start} AND time < {end} RETURNING *) "
    "INSERT INTO {partition} SELECT * FROM moved",
    "ALTER TABLE {parent} ATTACH PARTITION {partition} FOR VALUES FROM ({start}) TO ({end})",
)


def _create_partition(connection: BaseDatabaseWrapper, day: date) -> None:
    start, end = day_bounds(day)
    names = {
        "parent": sql.Identifier(REQUEST_TABLE),
        "default": sql.Identifier(DEFAULT_PARTITION),
        "partition": sql.Identifier(partition_name(day)),
        "start": sql.Literal(start),
        "end": sql.Literal(end),
    }
    with connection.cursor() as cursor:
        cursor.execute(_compose(connection, DEFAULT_HAS_ROWS, names))
        default_has_rows = cursor.fetchone()[0]
        statements = MOVE_ROWS_OUT_OF_DEFAULT if default_has_rows else (CREATE_PARTITION,)
        for statement in statements:
            cursor.execute(_compose(connection, statement, names))


def _compose(connection: BaseDatabaseWrapper, template: str, names: dict) -> str:
    """Render DDL whose identifiers and bounds are quoted by psycopg (never interpolated)."""
    connection.ensure_connection()
    return sql.SQL(template).format(**names).as_string(connection.connection)


def ensure_partitions_around(
    connection: BaseDatabaseWrapper, moment: datetime, days_back: int, days_ahead: int
) -> list[date]:
    today = moment.astimezone(UTC).date()
    return ensure_daily_partitions(
        connection, today - timedelta(days=days_back), today + timedelta(days=days_ahead)
    )


def droppable_partitions(connection: BaseDatabaseWrapper, cutoff: datetime) -> list[str]:
    """Daily partitions holding only rows older than `cutoff` (retention)."""
    return [
        partition_name(day)
        for day in sorted(existing_partition_days(connection))
        if day_bounds(day)[1] <= cutoff
    ]


def drop_partitions(connection: BaseDatabaseWrapper, names: list[str]) -> None:
    """Drop whole daily partitions: instant, unlike deleting their rows."""
    with connection.cursor() as cursor:
        for name in names:
            if not _PARTITION_NAME.match(name):
                raise ValueError(f"not a daily partition of {REQUEST_TABLE}: {name}")
            cursor.execute(
                _compose(connection, "DROP TABLE {partition}", {"partition": sql.Identifier(name)})
            )
