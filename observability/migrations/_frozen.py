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
