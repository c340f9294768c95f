"""Bulk writes into `api_request` with PostgreSQL COPY."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg
from django.db import IntegrityError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

# Column order of every row handed to the writers below, and the types the rows are
# sent as. Binary COPY: each value is dumped by psycopg's C code in PostgreSQL's wire
# format, about ten times cheaper per row than the text format.
COLUMNS = (
    "time", "project_id", "service", "endpoint", "method", "status_code", "latency_ms",
    "event_id", "trace_id", "span_id", "environment", "host", "error_message",
    "request_bytes", "response_bytes", "attributes", "apdex_t_ms",
)  # fmt: skip
COPY_TYPES = (
    "timestamptz", "int8", "text", "text", "text", "int2", "float8",
    "uuid", "text", "text", "text", "text", "text",
    "int8", "int8",
    # jsonb's binary form is a version byte and the JSON text; the JSON is already text,
    # so it is sent as raw bytes (see jsonb_value) instead of being decoded and re-encoded.
    "bytea",
    "float4",
)  # fmt: skip
JSONB_FORMAT_VERSION = b"\x01"
_COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))

COPY_INTO_TABLE = sql.SQL("COPY api_request ({columns}) FROM STDIN (FORMAT BINARY)").format(
    columns=_COLUMN_LIST
)

# The slow path for batches that repeat already stored events: stage them in a
# per-session temporary table (emptied at every commit), then insert the new ones only.
CREATE_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS ingest_staging "
    "(LIKE api_request INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
COPY_INTO_STAGING = sql.SQL("COPY ingest_staging ({columns}) FROM STDIN (FORMAT BINARY)").format(
    columns=_COLUMN_LIST
)
INSERT_NEW_FROM_STAGING = sql.SQL(
    "INSERT INTO api_request ({columns}) SELECT {columns} FROM ingest_staging "
    "ON CONFLICT (event_id, time) DO NOTHING"
).format(columns=_COLUMN_LIST)


def jsonb_value(json_text: bytes) -> bytes:
    """The `attributes` value of a row: JSON text in jsonb's binary wire form."""
    return JSONB_FORMAT_VERSION + json_text


def copy_rows(connection: BaseDatabaseWrapper, rows: Iterable[Sequence]) -> int:
    """COPY rows (tuples in COLUMNS order, attributes from jsonb_value) into the table.

    Fails on a duplicate (event_id, time); `store_rows` handles that. Returns the count.
    """
    return _copy(connection, COPY_INTO_TABLE, rows)


def store_rows(connection: BaseDatabaseWrapper, rows: list[Sequence]) -> int:
    """Store rows once each (idempotent on (event_id, time)); returns how many were new.

    Fast path: one COPY straight into the table, in its own transaction. If the batch
    repeats a stored event (a client retry), that COPY fails on the unique key and rolls
    back, and the batch goes through the staging table instead. Commits before returning.
    """
    if not rows:
        return 0
    try:
        with transaction.atomic(using=connection.alias):
            return copy_rows(connection, rows)
    except IntegrityError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
            raise
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(CREATE_STAGING)
        _copy(connection, COPY_INTO_STAGING, rows)
        cursor.execute(INSERT_NEW_FROM_STAGING)
        return cursor.rowcount


def _copy(
    connection: BaseDatabaseWrapper, statement: sql.Composed, rows: Iterable[Sequence]
) -> int:
    count = 0
    # wrap_database_errors: psycopg errors from the raw COPY become Django's
    # (OperationalError, IntegrityError), as for any other query.
    with connection.wrap_database_errors, connection.cursor() as cursor:
        with cursor.cursor.copy(statement) as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
                count += 1
    return count
