"""Bulk writes into `api_request` with PostgreSQL COPY."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

# Column order of every row handed to the COPY writers below.
COLUMNS = (
    "time",
    "project_id",
    "service",
    "endpoint",
    "method",
    "status_code",
    "latency_ms",
    "event_id",
    "trace_id",
    "span_id",
    "environment",
    "host",
    "error_message",
    "request_bytes",
    "response_bytes",
    "attributes",
)

_COPY_INTO_TABLE = sql.SQL("COPY api_request ({columns}) FROM STDIN").format(
    columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)


def copy_rows(connection: BaseDatabaseWrapper, rows: Iterable[Sequence]) -> int:
    """COPY rows (tuples in COLUMNS order, attributes as JSON text) straight into the table.

    No duplicate check: for generated data only. Returns the number of rows written.
    """
    count = 0
    with connection.cursor() as cursor, cursor.cursor.copy(_COPY_INTO_TABLE) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count
