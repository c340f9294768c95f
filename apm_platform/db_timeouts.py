"""Bounds on database work, by process: no single request may hold a worker or the
database for long.

Web workers (gunicorn, apm_platform/wsgi.py) run every statement under
APM_API_STATEMENT_TIMEOUT_MS; the scheduler (run_jobs) under the longer
APM_JOB_STATEMENT_TIMEOUT_MS; other commands (migrate, seeds, backfills run by hand) are
unbounded. Every bounded session also has client_connection_check_interval, so that a
query whose worker was killed stops within seconds instead of running to its end.
"""

from __future__ import annotations

from django.conf import settings
from django.db.backends.signals import connection_created

# How often a running query checks that its client is still there (PostgreSQL >= 14).
CLIENT_CHECK_INTERVAL = "5s"
SESSION_SETTINGS = (
    "SELECT set_config('statement_timeout', %s, false), "
    "set_config('client_connection_check_interval', %s, false)"
)


def bound_statements(milliseconds: int) -> None:
    """Run every statement of this process's future connections within `milliseconds`
    (0: no bound). One round trip per new connection, none per query."""
    if milliseconds <= 0:
        return

    def apply(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute(SESSION_SETTINGS, [f"{milliseconds}ms", CLIENT_CHECK_INTERVAL])

    connection_created.connect(apply, weak=False, dispatch_uid="apm_statement_timeout")


def serve_requests() -> None:
    bound_statements(settings.APM_API_STATEMENT_TIMEOUT_MS)


def run_jobs() -> None:
    bound_statements(settings.APM_JOB_STATEMENT_TIMEOUT_MS)
