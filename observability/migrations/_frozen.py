"""SQL helpers of the migrations, frozen with them.

Migrations must run the same SQL whatever the live code later becomes, so they never
import observability.analytics; the little they share is here. Never change what this
module does: add a new function instead.
"""

from __future__ import annotations


def is_portable(connection) -> bool:
    """True if 0001 built `api_request` partitioned (portable backend), False if 0002 made
    it a TimescaleDB hypertable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = 'api_request'::regclass")
        return cursor.fetchone()[0]


def run_all(schema_editor, statements) -> None:
    for statement in statements:
        schema_editor.execute(statement, params=None)


def offers_pgvector(connection) -> bool:
    """Whether the server has the pgvector extension to install (migration 0003 decides
    from this how sketches are stored; later migrations follow that choice)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
        )
        return cursor.fetchone()[0]


def sketches_in_pgvector(connection) -> bool:
    """True if 0003 stored sketches as pgvector's sparsevec, False for bigint[] pairs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(atttypid, atttypmod) LIKE 'sparsevec%' FROM pg_attribute "
            "WHERE attrelid = 'apm_rollup_endpoint_hourly'::regclass AND attname = 'sketch'"
        )
        return cursor.fetchone()[0]
