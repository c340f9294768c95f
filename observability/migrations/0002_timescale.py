"""Time partitioning, second half.

TimescaleDB: create the extension and turn `api_request` into a hypertable with daily
chunks (our own indexes from 0001 are kept; Timescale's defaults would duplicate them).
Portable PostgreSQL: create the daily partitions around today (api_request_pYYYYMMDD,
one UTC day each); the `run_jobs` scheduler keeps creating them ahead of time.
"""

from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db import migrations
from psycopg import sql

from observability.migrations._frozen import is_portable

CREATE_PARTITION = (
    "CREATE TABLE IF NOT EXISTS {partition} PARTITION OF api_request "
    "FOR VALUES FROM ({start}) TO ({end})"
)


def set_up_time_partitioning(apps, schema_editor):
    connection = schema_editor.connection
    if is_portable(connection):
        today = datetime.now(UTC).date()
        connection.ensure_connection()
        for offset in range(-1, settings.APM_PARTITIONS_AHEAD_DAYS + 1):
            day = today + timedelta(days=offset)
            start = datetime.combine(day, time.min, tzinfo=UTC)
            statement = sql.SQL(CREATE_PARTITION).format(
                partition=sql.Identifier(f"api_request_p{day:%Y%m%d}"),
                start=sql.Literal(start),
                end=sql.Literal(start + timedelta(days=1)),
            )
            schema_editor.execute(statement.as_string(connection.connection), params=None)
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    schema_editor.execute(
        "SELECT create_hypertable('api_request', by_range('time', INTERVAL '1 day'), "
        "create_default_indexes => false)"
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("observability", "0001_initial")]

    operations = [migrations.RunPython(set_up_time_partitioning, migrations.RunPython.noop)]
