"""Refresh the hourly rollups (continuous aggregates on TimescaleDB)."""

from observability.management.commands._refresh import RefreshCommand


class Command(RefreshCommand):
    help = (
        "Bring the hourly rollups up to date: new closed hours and hours with late or "
        "deleted requests. With --start/--end, recompute that range."
    )
    interval = "hour"
    label = "hourly"
