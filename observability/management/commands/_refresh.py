"""Shared body of refresh_apirequest_hourly and refresh_apirequest_daily."""

from __future__ import annotations

import time
from datetime import UTC

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from observability import jobs


class RefreshCommand(BaseCommand):
    interval: str  # "hour" or "day"
    label: str  # "hourly" or "daily"

    def add_arguments(self, parser):
        parser.add_argument(
            "--start", help="Recompute from this time (ISO 8601, UTC if no offset)."
        )
        parser.add_argument("--end", help="Recompute up to this time (exclusive).")

    def handle(self, *args, start=None, end=None, **options):
        began = time.perf_counter()
        report = jobs.refresh(self.interval, _parse(start, "--start"), _parse(end, "--end"))
        took = time.perf_counter() - began
        if report.buckets is None:  # TimescaleDB: its procedure does not count buckets
            self.stdout.write(
                f"{self.label} rollups: refreshed up to {report.watermark} in {took:.2f}s"
            )
            return
        self.stdout.write(
            f"{self.label} rollups: {report.buckets} bucket(s) recomputed in {took:.2f}s; "
            f"materialised until {report.watermark or '-'}"
        )


def _parse(value: str | None, option: str):
    if value is None:
        return None
    moment = parse_datetime(value)
    if moment is None:
        raise CommandError(f"{option}: not an ISO 8601 date-time: {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment
