"""Refresh the daily rollups (continuous aggregates on TimescaleDB)."""

from observability.management.commands._refresh import RefreshCommand


class Command(RefreshCommand):
    help = (
        "Bring the daily rollups up to date from the hourly ones (run the hourly refresh "
        "first). With --start/--end, recompute that range."
    )
    interval = "day"
    label = "daily"
