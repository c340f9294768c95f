"""Retention, range refreshes, partitions ahead, and the run_jobs scheduler."""

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from apm_platform.processes import BASE_DIR
from observability.analytics import backend, partitions
from observability.analytics.rollups import day_floor
from observability.models import ApiRequest
from observability.tests.analytics_data import generate

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def project(isolated_project):
    return isolated_project


@pytest.fixture
def portable():
    if backend.of(connection) != backend.PORTABLE:
        pytest.skip("portable backend only: TimescaleDB has its own jobs and read-only views")


def count(table: str, project) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE project_id = %s", [project.pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_retention_drops_old_partitions_and_rows(project, portable, settings):
    today = day_floor(datetime.now(UTC))
    old_day = (today - timedelta(days=40)).date()
    partitions.ensure_daily_partitions(connection, old_day, old_day)
    generate(project, today - timedelta(days=40), today - timedelta(days=39), 50, seed=1)
    generate(
        project, today - timedelta(days=45), today - timedelta(days=44), 50, seed=2
    )  # default partition
    generate(project, today - timedelta(days=2), today - timedelta(days=1), 50, seed=3)
    call_command(
        "refresh_apirequest_hourly",
        "--start",
        (today - timedelta(days=46)).isoformat(),
        verbosity=0,
    )

    dry = StringIO()
    call_command("apply_retention", "--dry-run", stdout=dry)
    assert "would drop 1 raw partition" in dry.getvalue()
    assert ApiRequest.objects.filter(project=project).count() == 150

    call_command("apply_retention", stdout=StringIO())

    assert ApiRequest.objects.filter(project=project).count() == 50
    assert old_day not in partitions.existing_partition_days(connection)
    # Hourly rollups live 180 days by default: still there; with 1 day they go too.
    assert count("apm_rollup_endpoint_hourly", project) > 0
    settings.APM_HOURLY_RETENTION_DAYS = 1
    call_command("apply_retention", stdout=StringIO())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(bucket) FROM apm_rollup_endpoint_hourly WHERE project_id = %s", [project.pk]
        )
        oldest = cursor.fetchone()[0]
    assert oldest is None or oldest >= datetime.now(UTC) - timedelta(days=1, hours=1)


def test_a_range_refresh_recomputes_exactly_that_range(project, portable):
    start = day_floor(datetime.now(UTC)) - timedelta(days=3)
    generate(project, start, start + timedelta(hours=6), 300, seed=4)
    call_command("refresh_apirequest_hourly", verbosity=0)
    with connection.cursor() as cursor:  # damage the rollup, then repair it by range
        cursor.execute(
            "UPDATE apm_rollup_endpoint_hourly SET hits = 0 WHERE project_id = %s", [project.pk]
        )

    out = StringIO()
    call_command("refresh_apirequest_hourly", "--start", start.isoformat(),
                 "--end", (start + timedelta(hours=6)).isoformat(), stdout=out)  # fmt: skip

    assert "6 bucket(s) recomputed" in out.getvalue()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(hits) FROM apm_rollup_endpoint_hourly WHERE project_id = %s", [project.pk]
        )
        assert cursor.fetchone()[0] == 300


def test_refresh_rejects_a_malformed_start():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--start"):
        call_command("refresh_apirequest_daily", "--start", "last tuesday")


def test_run_jobs_once_prepares_partitions_ahead(portable, settings):
    call_command("run_jobs", "--once", stdout=StringIO())

    today = datetime.now(UTC).date()
    ahead = {today + timedelta(days=n) for n in range(settings.APM_PARTITIONS_AHEAD_DAYS + 1)}
    assert ahead <= partitions.existing_partition_days(connection)


def test_on_timescaledb_run_jobs_lists_the_database_jobs():
    if backend.of(connection) != backend.TIMESCALE:
        pytest.skip("the portable backend's scheduler is tested below")
    out = StringIO()

    call_command("run_jobs", "--once", stdout=out)

    assert "policy_refresh_continuous_aggregate" in out.getvalue()
    assert "TimescaleDB runs these jobs itself" in out.getvalue()


def test_on_timescaledb_a_manual_refresh_leaves_the_open_hour_to_real_time(project):
    """Materialising the open hour would move the watermark past it: its later requests
    would be invisible until the policy recomputes that hour, an hour after it closed."""
    if backend.of(connection) != backend.TIMESCALE:
        pytest.skip("TimescaleDB only: the portable rollups never hold the open hour")
    now = datetime.now(UTC)
    open_hour = now.replace(minute=0, second=0, microsecond=0)
    generate(project, open_hour, now, 20, seed=5)
    call_command("refresh_apirequest_hourly", stdout=StringIO())
    generate(project, open_hour, now, 30, seed=6)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(hits) FROM apm_rollup_overview_hourly "
            "WHERE project_id = %s AND bucket = %s",
            [project.pk, open_hour],
        )
        assert cursor.fetchone()[0] == 50


def test_on_timescaledb_a_refresh_keeps_the_rollups_that_outlive_raw_data(project, settings):
    """Retention drops raw chunks and marks their range changed: a refresh over it would
    recompute hourly rollups from nothing (and daily ones from those)."""
    if backend.of(connection) != backend.TIMESCALE:
        pytest.skip("TimescaleDB only: the portable refresh never reads past raw retention")
    now = datetime.now(UTC)
    old = day_floor(now) - timedelta(days=10)
    generate(project, old, old + timedelta(hours=6), 60, seed=7)
    call_command("refresh_apirequest_hourly", stdout=StringIO())
    call_command("refresh_apirequest_daily", stdout=StringIO())
    settings.APM_RAW_RETENTION_DAYS = 5
    with connection.cursor() as cursor:  # what the retention policy does
        cursor.execute(
            "SELECT count(*) FROM drop_chunks('api_request', older_than => %s)",
            [now - timedelta(days=5)],
        )
        assert cursor.fetchone()[0] >= 1

    call_command("refresh_apirequest_hourly", stdout=StringIO())
    call_command("refresh_apirequest_daily", stdout=StringIO())

    for table in ("apm_rollup_overview_hourly", "apm_rollup_overview_daily"):
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT sum(hits) FROM {table} WHERE project_id = %s",  # noqa: S608
                [project.pk],
            )
            assert cursor.fetchone()[0] == 60, table


def timescale_policies() -> dict[tuple[str, str], str]:
    """(relation, policy) -> the age it acts after, of TimescaleDB's own jobs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT hypertable_name, proc_name, "
            "coalesce(config ->> 'drop_after', config ->> 'compress_after') "
            "FROM timescaledb_information.jobs "
            "WHERE proc_name IN ('policy_retention', 'policy_compression')"
        )
        return {(table, proc): age for table, proc, age in cursor.fetchall()}


def test_on_timescaledb_retention_sets_the_policies_from_the_settings(settings):
    if backend.of(connection) != backend.TIMESCALE:
        pytest.skip("TimescaleDB only: the portable backend's retention is tested above")
    defaults = (
        settings.APM_RAW_RETENTION_DAYS,
        settings.APM_HOURLY_RETENTION_DAYS,
        settings.APM_COMPRESS_AFTER_DAYS,
    )
    settings.APM_RAW_RETENTION_DAYS = 12
    settings.APM_HOURLY_RETENTION_DAYS = 90
    settings.APM_COMPRESS_AFTER_DAYS = 3
    try:
        call_command("apply_retention", stdout=StringIO())
        policies = timescale_policies()
    finally:  # the database keeps its policies: give it back those of the defaults
        (
            settings.APM_RAW_RETENTION_DAYS,
            settings.APM_HOURLY_RETENTION_DAYS,
            settings.APM_COMPRESS_AFTER_DAYS,
        ) = defaults
        call_command("apply_retention", stdout=StringIO())

    assert policies[("api_request", "policy_retention")] == "12 days"
    assert policies[("apm_rollup_endpoint_hourly", "policy_retention")] == "90 days"
    assert policies[("apm_rollup_endpoint_daily", "policy_retention")] == "1095 days"
    assert policies[("api_request", "policy_compression")] == "3 days"
    # One policy per relation: the old ones were replaced, not added to.
    assert len(policies) == 8


@pytest.mark.slow
def test_run_jobs_stops_cleanly_on_sigterm():
    params = connection.settings_dict
    url = f"postgres://{params['USER']}@{params['HOST']}:{params['PORT']}/{params['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "apm_platform.ci_settings", "DATABASE_URL": url}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_jobs"],
        cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    # Its signal handlers are in place once it says so (on TimescaleDB, after it has
    # listed the database's own jobs).
    lines = iter(process.stdout.readline, "")
    assert "run_jobs: started" in (line.strip() for line in lines)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr[-2000:]
    assert "run_jobs: stopped" in stdout
    assert "Traceback" not in stderr
