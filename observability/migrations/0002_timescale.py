"""Time partitioning, second half.

TimescaleDB: create the extension and turn `api_request` into a hypertable with daily
chunks (our own indexes from 0001 are kept; Timescale's defaults would duplicate them).
Portable PostgreSQL: create the daily partitions around today; the `run_jobs` scheduler
keeps creating them ahead of time.
"""

from django.conf import settings
from django.db import migrations
from django.utils import timezone

from observability.analytics import backend, partitions


def set_up_time_partitioning(apps, schema_editor):
    connection = schema_editor.connection
    if backend.installed(connection) == backend.POSTGRES:
        partitions.ensure_partitions_around(
            connection, timezone.now(), days_back=1, days_ahead=settings.APM_PARTITIONS_AHEAD_DAYS
        )
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    schema_editor.execute(
        "SELECT create_hypertable('api_request', by_range('time', INTERVAL '1 day'), "
        "create_default_indexes => false)"
    )


class Migration(migrations.Migration):
    # Partition creation takes advisory locks in their own transactions.
    atomic = False

    dependencies = [("observability", "0001_initial")]

    operations = [migrations.RunPython(set_up_time_partitioning, migrations.RunPython.noop)]
