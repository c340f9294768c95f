"""The scheduler of the portable backend (TimescaleDB runs its own jobs)."""

from __future__ import annotations

import logging
import signal
import threading
import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections, connection

from observability import ai
from observability.ai.backfill import backfill
from observability.analytics import backend, maintenance

logger = logging.getLogger(__name__)

# (job name, period in seconds)
JOBS = (
    ("refresh_hourly", 60),
    ("refresh_daily", 600),
    ("embeddings", 60),
    ("partitions", 3600),
    ("retention", 3600),
)
# On TimescaleDB the database schedules rollups and retention; these remain ours.
TIMESCALE_RUNS_OURS = {"embeddings"}
# Requests one embedding round processes at most (the next round continues).
EMBEDDING_ROUND = 5000


class Command(BaseCommand):
    help = (
        "Run the periodic jobs until SIGTERM/SIGINT: refresh the hourly (every minute) and "
        "daily (every 10 minutes) rollups, embed new requests for search (every minute), "
        "create partitions ahead and apply retention (hourly). On TimescaleDB the database "
        "runs the rollup and retention jobs: list them, and run the embedding job only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="Run every job once, then exit.")

    def handle(self, *args, once=False, **options):
        jobs = JOBS
        if backend.current(connection) == backend.TIMESCALE:
            self.report_timescale_jobs()
            jobs = tuple(job for job in JOBS if job[0] in TIMESCALE_RUNS_OURS)
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if not once:
            self.stdout.write("run_jobs: started")
            self.stdout.flush()
        due = dict.fromkeys((name for name, _ in jobs), 0.0)
        while not stop.is_set():
            for name, period in jobs:
                if stop.is_set() or time.monotonic() < due[name]:
                    continue
                self.run_job(name)
                due[name] = time.monotonic() + period
            if once:
                return
            stop.wait(timeout=5)
        self.stdout.write("run_jobs: stopped")

    def run_job(self, name: str) -> None:
        close_old_connections()
        started = time.perf_counter()
        try:
            result = {
                "refresh_hourly": lambda: maintenance.refresh("hour"),
                "refresh_daily": lambda: maintenance.refresh("day"),
                "embeddings": lambda: backfill(ai.get_provider(), limit=EMBEDDING_ROUND),
                "partitions": maintenance.prepare_partitions,
                "retention": maintenance.apply_retention,
            }[name]()
        except (DatabaseError, ai.EmbeddingError) as exc:
            # The database or the provider may be down: log, and try again next period.
            logger.warning("job %s failed: %s", name, exc)
            return
        logger.info("job %s done in %.2fs: %s", name, time.perf_counter() - started, result)

    def report_timescale_jobs(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT job_id, proc_name, hypertable_name, schedule_interval, next_start "
                "FROM timescaledb_information.jobs ORDER BY job_id"
            )
            for row in cursor.fetchall():
                self.stdout.write(" ".join(str(value) for value in row))
        self.stdout.write("TimescaleDB runs these jobs itself; run_jobs runs the embedding job.")
