"""Delete data past its retention."""

from django.core.management.base import BaseCommand

from observability import jobs


class Command(BaseCommand):
    help = (
        "Apply retention: raw requests older than APM_RAW_RETENTION_DAYS (whole daily "
        "partitions are dropped), hourly rollups older than APM_HOURLY_RETENTION_DAYS, daily "
        "older than APM_DAILY_RETENTION_DAYS, and the search data of deleted requests. On "
        "TimescaleDB, set its retention policies to the same days."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report, delete nothing.")

    def handle(self, *args, dry_run=False, **options):
        report = jobs.apply_retention(dry_run=dry_run)
        if report.policies:
            verb = "would be set" if dry_run else "set"
            days = ", ".join(f"{name} {keep}" for name, keep in report.policies.items())
            self.stdout.write(f"TimescaleDB retention policies {verb} (days): {days}")
        else:
            verb = "would drop" if dry_run else "dropped"
            self.stdout.write(f"{verb} {len(report.partitions_dropped)} raw partition(s)")
        for table, count in report.rows_deleted.items():
            self.stdout.write(f"{table}: {count} row(s) {'to delete' if dry_run else 'deleted'}")
