"""The scheduler of the app's periodic jobs (observability/jobs.py)."""

from __future__ import annotations

import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection

from apm_platform import db_timeouts
from observability import ai, jobs
from observability.analytics import backend

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run the periodic jobs until SIGTERM/SIGINT: refresh the hourly (every minute) and "
        "daily (every 10 minutes) rollups, embed new requests for search (every minute), "
        "create partitions ahead and apply retention (hourly), evaluate SLO burn rates and "
        "error groups as alerts (every minute), send notifications (every 10 seconds, in a "
        "thread of their own). On TimescaleDB the database "
        "runs the rollup, partition and retention jobs: list them, and run the others."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run every job once, then exit.")

    def handle(self, *args, once=False, **options):
        db_timeouts.run_jobs()
        connection.close()  # the jobs' connections get the jobs' statement timeout
        if backend.of(connection).schedules_itself:
            self.report_timescale_jobs()
        scheduled = jobs.scheduled(connection)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if not once:
            self.stdout.write("run_jobs: started")
            self.stdout.flush()
        due = {job.name: 0.0 for job in scheduled}
        while not stop.is_set():
            for job in scheduled:
                if stop.is_set() or time.monotonic() < due[job.name]:
                    continue
                self.run_job(job)
                due[job.name] = time.monotonic() + job.period_s
            if once:
                return
            stop.wait(timeout=5)
        self.stdout.write("run_jobs: stopped")

    def run_job(self, job: jobs.Job) -> None:
        close_old_connections()
        started = time.perf_counter()
        try:
            result = job.run()
        except (DatabaseError, ai.EmbeddingError) as exc:
            # The database or the provider may be down: log, and try again next period.
            logger.warning("job %s failed: %s", job.name, exc)
            return
        logger.info("job %s done in %.2fs: %s", job.name, time.perf_counter() - started, result)

    def report_timescale_jobs(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT job_id, proc_name, hypertable_name, schedule_interval, next_start "
                "FROM timescaledb_information.jobs ORDER BY job_id"
            )
            for row in cursor.fetchall():
                self.stdout.write(" ".join(str(value) for value in row))
        self.stdout.write("TimescaleDB runs these jobs itself; run_jobs runs the others.")
