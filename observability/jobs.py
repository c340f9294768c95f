"""The periodic jobs, run by `run_jobs` and on demand by their management commands.

Each job does its work on whichever analytics backend the database has. TimescaleDB
schedules its own rollup refresh, retention and chunk jobs (policies), so there
`run_jobs` runs only the jobs of ours that it has no policy for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper

from observability import ai
from observability.ai import retention as search_retention
from observability.ai.backfill import backfill
from observability.alerting import anomalies as anomaly_alerts
from observability.alerting import error_groups as error_group_alerts
from observability.alerting import notify, slos
from observability.alerting import retention as alerting_retention
from observability.alerting.models import Slo
from observability.analytics import backend, retention
from observability.analytics.refresh import RefreshReport
from observability.analytics.retention import RetentionReport
from observability.error_groups import retention as error_groups_retention
from observability.error_groups import store as error_groups_store
from observability.ingest import idempotency
from observability.models import Project

# Requests one embedding round processes at most (the next round continues).
EMBEDDING_ROUND = 5000


def refresh(
    interval: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    now: datetime | None = None,
    connection: BaseDatabaseWrapper = default_connection,
) -> RefreshReport:
    """Bring the rollups of one interval up to date (or recompute [start, end))."""
    return backend.of(connection).refresh(
        connection, interval, start, end, now=now or datetime.now(UTC)
    )


def apply_retention(
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    connection: BaseDatabaseWrapper = default_connection,
) -> RetentionReport:
    """Delete requests, rollups, search data, error groups and alert history past their
    retention (on TimescaleDB: set its retention policies from the settings)."""
    now = now or datetime.now(UTC)
    report = backend.of(connection).apply_retention(connection, now, dry_run)
    if not dry_run:
        report.rows_deleted |= apply_search_retention(now, connection=connection)
        report.rows_deleted |= apply_error_group_retention(now, connection=connection)
        report.rows_deleted |= alerting_retention.apply_retention(now)
    return report


def apply_search_retention(
    now: datetime | None = None, *, connection: BaseDatabaseWrapper = default_connection
) -> dict[str, int]:
    cutoff = retention.raw_cutoff(now or datetime.now(UTC))
    return search_retention.apply_retention(connection, cutoff)


def apply_error_group_retention(
    now: datetime | None = None, *, connection: BaseDatabaseWrapper = default_connection
) -> dict[str, int]:
    return error_groups_retention.apply_retention(connection, now or datetime.now(UTC))


def fold_error_group_counts(*, connection: BaseDatabaseWrapper = default_connection) -> int:
    """Add the occurrences ingest recorded to their error groups (counts, hours,
    endpoints, regressions)."""
    return error_groups_store.fold(connection)


def prepare_partitions(
    now: datetime | None = None, *, connection: BaseDatabaseWrapper = default_connection
) -> list[date]:
    """Daily partitions for today and the days ahead (portable backend)."""
    today = (now or datetime.now(UTC)).date()
    ahead = today + timedelta(days=settings.APM_PARTITIONS_AHEAD_DAYS)
    return backend.of(connection).prepare_partitions(connection, today, ahead)


def expire_idempotency_keys() -> int:
    return idempotency.expire()


def embed_new_requests():
    return backfill(ai.get_provider(), limit=EMBEDDING_ROUND)


def evaluate_alerts(at: datetime | None = None) -> dict[str, int]:
    """One evaluation minute: every project's SLO burn-rate rules, its endpoints' anomalies
    (docs/ANOMALIES.md), and the error groups that opened, reopened or were resolved
    (docs/ALERTING.md)."""
    at = slos.evaluation_minute(at)
    projects = Slo.objects.values_list("project_id", flat=True).distinct().order_by()
    evaluated = sum(len(slos.run_alerts(project_id, at)) for project_id in projects)
    endpoints = sum(
        len(anomaly_alerts.run_alerts(project_id, at))
        for project_id in Project.objects.values_list("pk", flat=True)
    )
    return {
        "slos": evaluated,
        "anomaly_signals": endpoints,
        "error_groups": error_group_alerts.sync(at),
    }


def deliver_notifications() -> str:
    """Send due notifications in the sender's own thread: never waits for a receiver."""
    return notify.drain_in_background()


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    period_s: float
    run: Callable[[], object]
    # TimescaleDB has a policy doing this: not scheduled there.
    timescale_policy: bool = False


JOBS = (
    Job("refresh_hourly", 60, lambda: refresh("hour"), timescale_policy=True),
    Job("refresh_daily", 600, lambda: refresh("day"), timescale_policy=True),
    Job("embeddings", 60, embed_new_requests),
    Job("partitions", 3600, prepare_partitions, timescale_policy=True),
    Job("retention", 3600, apply_retention, timescale_policy=True),
    Job("search_retention", 3600, apply_search_retention),
    # A known group's counts trail its requests by up to this period (plus the 5 s tick).
    Job("error_group_counts", 5, fold_error_group_counts),
    Job("error_group_retention", 3600, apply_error_group_retention),
    Job("idempotency_keys", 3600, expire_idempotency_keys),
    Job("alerts", 60, evaluate_alerts),
    Job("notifications", 10, deliver_notifications),
)


def scheduled(connection: BaseDatabaseWrapper = default_connection) -> tuple[Job, ...]:
    """The jobs `run_jobs` runs on this database's backend."""
    own_policies = backend.of(connection).schedules_itself
    return tuple(job for job in JOBS if not (job.timescale_policy and own_policies))
