"""The analytics backend of a database: TimescaleDB or portable PostgreSQL.

Both are real products: TimescaleDB where the server has it (hypertable, continuous
aggregates and policies), plain PostgreSQL elsewhere (daily partitions, rollup tables
refreshed by our scheduler). Everything they do differently is a method of the backend
object here; the rest of the code asks `backend.of(connection)` and never branches on
the name.

The choice is made once, when migration 0001 creates `api_request`
(APM_ANALYTICS_BACKEND=auto|timescale|postgres). Afterwards the schema itself is the
source of truth: a hypertable means TimescaleDB, a partitioned table means portable.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from observability.analytics import partitions, refresh, retention, rollups
from observability.analytics.refresh import RefreshReport
from observability.analytics.retention import RetentionReport

REQUEST_TABLE = partitions.REQUEST_TABLE
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)


class Portable:
    """Native range partitions by day; rollup tables refreshed by `run_jobs`."""

    name = "postgres"
    # The app's scheduler (run_jobs) refreshes, partitions and applies retention.
    schedules_itself = False

    def materialised_until(self, connection: BaseDatabaseWrapper) -> tuple[datetime, datetime]:
        """Hourly and daily watermarks: rollups are complete before them."""
        marks = refresh.watermarks(connection)
        return marks.get(rollups.HOUR, FAR_PAST), marks.get(rollups.DAY, FAR_PAST)

    def refresh(self, connection, interval: str, start=None, end=None, *, now) -> RefreshReport:
        return refresh.refresh(connection, interval, start, end, now)

    def apply_retention(self, connection, now: datetime, dry_run: bool) -> RetentionReport:
        return retention.apply_portable(connection, now, dry_run)

    def prepare_partitions(self, connection, first: date, last: date) -> list[date]:
        """Create the daily partitions for first..last (writes never need them: the
        default partition catches rows, but a partition per day keeps scans short)."""
        return partitions.ensure_daily_partitions(connection, first, last)


# TimescaleDB compression of raw chunks: segment by project (every query filters on it),
# newest first inside a segment.
ENABLE_COMPRESSION = """
ALTER TABLE api_request SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'project_id', timescaledb.compress_orderby = 'time DESC')
"""
ADD_COMPRESSION_POLICY = """
SELECT add_compression_policy('api_request', compress_after => make_interval(days => %s))
"""


class Timescale:
    """Hypertable, continuous aggregates, and TimescaleDB's own policies and jobs."""

    name = "timescale"
    # Policies refresh the rollups and apply retention and compression.
    schedules_itself = True

    def materialised_until(self, connection: BaseDatabaseWrapper) -> tuple[datetime, datetime]:
        # Real-time continuous aggregates include the not-yet-materialised hours; the
        # open day is read from the hourly ones.
        return FAR_FUTURE, rollups.day_floor(datetime.now(UTC))

    def refresh(self, connection, interval: str, start=None, end=None, *, now) -> RefreshReport:
        # Within what the source still holds: retention dropping source chunks marks their
        # range changed, and a refresh over it would delete the rollups that outlive them.
        # Closed buckets only, as the policies do: materialising the open one would move
        # the watermark past it, and real-time aggregation would no longer see its later
        # rows (until a policy recomputes it, an hour after it closed).
        earliest = now - timedelta(days=self.source_retention_days(interval))
        start = earliest if start is None else max(start, earliest)
        closed = rollups.floor_to(interval, now)
        end = closed if end is None else min(end, closed)
        if start >= end:
            return RefreshReport(interval)  # nothing closed in the window
        connection.ensure_connection()
        with connection.cursor() as cursor:
            for rollup in rollups.of_interval(interval):
                # The procedure commits as it goes: it must run outside a transaction block
                # (Django's autocommit) and over the simple query protocol, that is with no
                # parameters, so its arguments are quoted by psycopg into the statement.
                statement = sql.SQL("CALL refresh_continuous_aggregate({}, {}, {})").format(
                    sql.Literal(rollup.table), sql.Literal(start), sql.Literal(end)
                )
                cursor.execute(statement.as_string(connection.connection))
        # The procedure does not say how many buckets it recomputed.
        return RefreshReport(interval, buckets=None, watermark=closed)

    @staticmethod
    def source_retention_days(interval: str) -> int:
        """Hourly rollups are computed from raw requests, daily ones from hourly rollups."""
        if interval == rollups.HOUR:
            return settings.APM_RAW_RETENTION_DAYS
        return settings.APM_HOURLY_RETENTION_DAYS

    def apply_retention(self, connection, now: datetime, dry_run: bool) -> RetentionReport:
        """Make the retention and compression policies match the settings (TimescaleDB
        runs them on its schedule)."""
        days = retention.retention_days()
        if not dry_run:
            self.sync_policies(connection, days)
        return RetentionReport(policies=days)

    @staticmethod
    def sync_policies(connection, days: dict[str, int]) -> None:
        with connection.cursor() as cursor:
            for relation, keep in days.items():
                cursor.execute("SELECT remove_retention_policy(%s, if_exists => true)", [relation])
                cursor.execute(
                    "SELECT add_retention_policy(%s, drop_after => make_interval(days => %s))",
                    [relation, keep],
                )
            cursor.execute(ENABLE_COMPRESSION)
            cursor.execute("SELECT remove_compression_policy('api_request', if_exists => true)")
            cursor.execute(ADD_COMPRESSION_POLICY, [settings.APM_COMPRESS_AFTER_DAYS])

    def prepare_partitions(self, connection, first: date, last: date) -> list[date]:
        return []  # TimescaleDB creates chunks as rows arrive


Backend = Portable | Timescale
PORTABLE = Portable()
TIMESCALE = Timescale()


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
        available, installed_, preload = cursor.fetchone()
    if installed_:
        return True, "the timescaledb extension is installed"
    if not available:
        return False, "the server does not offer the timescaledb extension"
    if "timescaledb" not in preload:
        return False, "timescaledb is available but not in shared_preload_libraries"
    return True, "the server offers the timescaledb extension"


def choose(connection: BaseDatabaseWrapper) -> BackendChoice:
    """The backend migrations would build the schema for (the system check reports it)."""
    configured = settings.APM_ANALYTICS_BACKEND
    usable, why = timescale_status(connection)
    if configured == PORTABLE.name:
        return BackendChoice(PORTABLE.name, "APM_ANALYTICS_BACKEND=postgres")
    if configured == TIMESCALE.name:
        if usable:
            return BackendChoice(TIMESCALE.name, f"APM_ANALYTICS_BACKEND=timescale and {why}")
        return BackendChoice(None, f"APM_ANALYTICS_BACKEND=timescale but {why}")
    return BackendChoice(
        TIMESCALE.name if usable else PORTABLE.name, f"APM_ANALYTICS_BACKEND=auto and {why}"
    )


def installed(connection: BaseDatabaseWrapper) -> Backend | None:
    """The backend the existing schema was built for; None before migrations built it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relkind = 'p', "
            "to_regclass('_timescaledb_catalog.hypertable') IS NOT NULL "
            "FROM pg_class c WHERE c.oid = to_regclass(%s)",
            [REQUEST_TABLE],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        partitioned, has_timescale = row
        if partitioned:
            return PORTABLE
        if has_timescale:
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
_of: dict[tuple, Backend] = {}


def of(connection: BaseDatabaseWrapper) -> Backend:
    """The backend of this database's schema. Raises if migrations have not built it."""
    params = connection.settings_dict
    database = (params["HOST"], params["PORT"], params["NAME"])
    if database not in _of:
        built = installed(connection)
        if built is None:
            raise RuntimeError("api_request is neither partitioned nor a hypertable: migrate")
        _of[database] = built
    return _of[database]
