"""Bulk writes into `api_request` with PostgreSQL COPY."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import psycopg
from django.db import DataError, IntegrityError, OperationalError, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

# Column order of every row handed to the writers below, and the types the rows are
# sent as. Binary COPY: each value is dumped by psycopg's C code in PostgreSQL's wire
# format, about ten times cheaper per row than the text format.
COLUMNS = (
    "time", "project_id", "service", "endpoint", "method", "status_code", "latency_ms",
    "event_id", "trace_id", "span_id", "environment", "host", "error_message",
    "request_bytes", "response_bytes", "attributes", "apdex_t_ms", "error_group_id",
)  # fmt: skip
COPY_TYPES = (
    "timestamptz", "int8", "text", "text", "text", "int2", "float8",
    "uuid", "text", "text", "text", "text", "text",
    "int8", "int8",
    # jsonb's binary form is a version byte and the JSON text; the JSON is already text,
    # so it is sent as raw bytes (see jsonb_value) instead of being decoded and re-encoded.
    "bytea",
    "float4",
    "int8",
)  # fmt: skip
JSONB_FORMAT_VERSION = b"\x01"
TIME, EVENT_ID = COLUMNS.index("time"), COLUMNS.index("event_id")
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
    "ON CONFLICT (project_id, event_id, time) DO NOTHING RETURNING event_id, time"
).format(columns=_COLUMN_LIST)


def jsonb_value(json_text: bytes) -> bytes:
    """The `attributes` value of a row: JSON text in jsonb's binary wire form."""
    return JSONB_FORMAT_VERSION + json_text


def copy_rows(connection: BaseDatabaseWrapper, rows: Iterable[Sequence]) -> int:
    """COPY rows (tuples in COLUMNS order, attributes from jsonb_value) into the table.

    Fails on a duplicate key; `store_rows` handles that. Returns the count.
    """
    return _copy(connection, COPY_INTO_TABLE, rows)


@dataclasses.dataclass
class Stored:
    new: int = 0  # rows stored now (the others were duplicates or unstorable)
    # Position in the batch -> why the database refused that row.
    unstorable: dict[int, str] = dataclasses.field(default_factory=dict)
    # (event_id, time) of the rows stored now; None when every row was (the fast path).
    new_keys: set[tuple] | None = None

    def is_new(self, row: Sequence) -> bool:
        return self.new_keys is None or (row[EVENT_ID], row[TIME]) in self.new_keys


class _RollBack(Exception):
    """Undo a strict batch once its unstorable rows are known."""


def store_rows(
    connection: BaseDatabaseWrapper, rows: list[Sequence], *, all_or_nothing: bool = False,
    then: Callable[[Stored], None] | None = None,
) -> Stored:  # fmt: skip
    """Store rows once each (idempotent on the primary key); commits before returning.

    Fast path: one COPY straight into the table, in its own transaction. If the batch
    repeats a stored event (a client retry), that COPY fails on the unique key and rolls
    back, and the batch goes through the staging table instead. If the database refuses
    a row's values (validation should make that impossible; this is the safety net), the
    batch is bisected to find every such row: the others are stored, or, with
    `all_or_nothing`, none is and the refused rows are reported. `then(stored)` runs in
    the transaction that stores the rows, before it commits: what it writes is committed
    with them, once.
    """
    if not rows:
        return Stored()
    then = then or _nothing
    try:
        with transaction.atomic(using=connection.alias):
            stored = Stored(copy_rows(connection, rows))
            then(stored)
            return stored
    except IntegrityError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
            if not _refused_row(exc):
                raise
            return _store_isolating(connection, rows, all_or_nothing, then)
    except (DataError, OperationalError) as exc:
        if not _refused_row(exc):
            raise
        return _store_isolating(connection, rows, all_or_nothing, then)
    try:
        with transaction.atomic(using=connection.alias):
            new_keys = _insert_new(connection, rows)
            stored = Stored(len(new_keys), new_keys=new_keys)
            then(stored)
            return stored
    except (DataError, IntegrityError, OperationalError) as exc:
        if not _refused_row(exc):
            raise
        return _store_isolating(connection, rows, all_or_nothing, then)


def _nothing(stored: Stored) -> None:
    pass


def _insert_new(connection: BaseDatabaseWrapper, rows: Sequence[Sequence]) -> set[tuple]:
    """Through the staging table: only rows whose key is not stored yet; their keys."""
    with connection.cursor() as cursor:
        cursor.execute(CREATE_STAGING)
        _copy(connection, COPY_INTO_STAGING, rows)
        cursor.execute(INSERT_NEW_FROM_STAGING)
        return set(cursor.fetchall())


def _store_isolating(connection, rows: list[Sequence], all_or_nothing: bool, then) -> Stored:
    stored = Stored(new_keys=set())
    try:
        with transaction.atomic(using=connection.alias):
            _bisect(connection, rows, 0, stored)
            if all_or_nothing and stored.unstorable:
                raise _RollBack
            then(stored)
    except _RollBack:
        stored.new, stored.new_keys = 0, set()
    return stored


def _bisect(connection, rows: Sequence[Sequence], offset: int, stored: Stored) -> None:
    """Store `rows` (at `offset` in the batch) in a savepoint; on a refused value, halve."""
    try:
        with transaction.atomic(using=connection.alias):
            new_keys = _insert_new(connection, rows)
            stored.new += len(new_keys)
            stored.new_keys |= new_keys
            return
    except (DataError, IntegrityError, OperationalError) as exc:
        if not _refused_row(exc):
            raise
        if len(rows) == 1:
            stored.unstorable[offset] = str(exc.__cause__ or exc).strip().splitlines()[0]
            return
    middle = len(rows) // 2
    _bisect(connection, rows[:middle], offset, stored)
    _bisect(connection, rows[middle:], offset + middle, stored)


def _refused_row(exc: Exception) -> bool:
    """A value the database cannot store (bad data, too deep, a broken constraint), as
    opposed to the database being unavailable."""
    cause = exc.__cause__
    if getattr(cause, "sqlstate", None) is None:
        return False  # raised by the client (a bug of ours), not a refusal of the server
    if isinstance(exc, IntegrityError):
        return not isinstance(cause, psycopg.errors.UniqueViolation)
    if isinstance(exc, OperationalError):
        return isinstance(cause, psycopg.errors.ProgramLimitExceeded)
    return isinstance(exc, DataError)


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
