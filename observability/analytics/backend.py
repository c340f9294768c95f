"""Which analytics backend the database runs: TimescaleDB or portable PostgreSQL.

The choice is made once, when migration 0001 creates `api_request`
(APM_ANALYTICS_BACKEND=auto|timescale|postgres). Afterwards the schema itself is the
source of truth: a hypertable means TimescaleDB, a partitioned table means portable.
"""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper

TIMESCALE = "timescale"
POSTGRES = "postgres"
REQUEST_TABLE = "api_request"


@dataclasses.dataclass(frozen=True)
class BackendChoice:
    name: str | None  # None: the configured backend cannot run on this server
    reason: str


def timescale_status(connection: BaseDatabaseWrapper) -> tuple[bool, str]:
    """Whether TimescaleDB can be used on this server, and why (not)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), "
            "EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'), "
            "current_setting('shared_preload_libraries')"
        )
        available, installed, preload = cursor.fetchone()
    if installed:
        return True, "the timescaledb extension is installed"
    if not available:
        return False, "the server does not offer the timescaledb extension"
    if "timescaledb" not in preload:
        return False, "timescaledb is available but not in shared_preload_libraries"
    return True, "the server offers the timescaledb extension"


def choose(connection: BaseDatabaseWrapper) -> BackendChoice:
    """The backend to build the schema for, from APM_ANALYTICS_BACKEND and the server."""
    configured = settings.APM_ANALYTICS_BACKEND
    usable, why = timescale_status(connection)
    if configured == POSTGRES:
        return BackendChoice(POSTGRES, "APM_ANALYTICS_BACKEND=postgres")
    if configured == TIMESCALE:
        if usable:
            return BackendChoice(TIMESCALE, f"APM_ANALYTICS_BACKEND=timescale and {why}")
        return BackendChoice(None, f"APM_ANALYTICS_BACKEND=timescale but {why}")
    if usable:
        return BackendChoice(TIMESCALE, f"APM_ANALYTICS_BACKEND=auto and {why}")
    return BackendChoice(POSTGRES, f"APM_ANALYTICS_BACKEND=auto and {why}")


def installed(connection: BaseDatabaseWrapper) -> str | None:
    """The backend the existing schema was built for; None before migration 0001."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [REQUEST_TABLE],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        if row[0] == "p":
            return POSTGRES
        cursor.execute("SELECT to_regclass('_timescaledb_catalog.hypertable') IS NOT NULL")
        if cursor.fetchone()[0]:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM _timescaledb_catalog.hypertable "
                "WHERE table_name = %s)",
                [REQUEST_TABLE],
            )
            if cursor.fetchone()[0]:
                return TIMESCALE
    # A plain table: migration 0002 has not turned it into a hypertable yet.
    return None


# database (host, port, name) -> backend. A running app's schema does not change backend.
_current: dict[tuple, str] = {}


def current(connection: BaseDatabaseWrapper) -> str:
    """The backend queries must be written for. Raises if the schema is not built."""
    params = connection.settings_dict
    database = (params["HOST"], params["PORT"], params["NAME"])
    if database not in _current:
        backend = installed(connection)
        if backend is None:
            raise RuntimeError("api_request is neither partitioned nor a hypertable: migrate")
        _current[database] = backend
    return _current[database]
