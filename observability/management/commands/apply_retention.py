"""Delete data past its retention."""

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connection

from observability.analytics import backend, maintenance


class Command(BaseCommand):
    help = (
        "Apply retention: raw requests older than APM_RAW_RETENTION_DAYS (whole daily "
        "partitions are dropped), hourly rollups older than APM_HOURLY_RETENTION_DAYS, daily "
        "older than APM_DAILY_RETENTION_DAYS. On TimescaleDB, sync the retention policies."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report, delete nothing.")

    def handle(self, *args, dry_run=False, **options):
        if backend.current(connection) == backend.TIMESCALE:
            maintenance.apply_retention(dry_run=dry_run)
            self.stdout.write(
                "TimescaleDB retention policies set (days): "
                f"raw {settings.APM_RAW_RETENTION_DAYS}, "
                f"hourly {settings.APM_HOURLY_RETENTION_DAYS}, "
                f"daily {settings.APM_DAILY_RETENTION_DAYS}"
            )
            return
        report = maintenance.apply_retention(dry_run=dry_run)
        verb = "would drop" if dry_run else "dropped"
        self.stdout.write(f"{verb} {len(report.partitions_dropped)} raw partition(s)")
        for table, count in report.rows_deleted.items():
            self.stdout.write(f"{table}: {count} row(s) {'to delete' if dry_run else 'deleted'}")
