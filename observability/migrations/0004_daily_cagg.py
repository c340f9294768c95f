"""Daily rollups, and on TimescaleDB the retention and compression policies.

Portable: the daily rollup tables (recomputed from the hourly ones by the refresh
commands; retention is applied by `apply_retention` / `run_jobs`). TimescaleDB:
hierarchical continuous aggregates on the hourly ones, and the policies.
"""

from django.db import migrations

from observability.analytics import backend, rollups

DAILY_POLICY = (
    "SELECT add_continuous_aggregate_policy(%s, start_offset => INTERVAL '7 days', "
    "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour')"
)


def create_daily_rollups(apps, schema_editor):
    connection = schema_editor.connection
    if backend.current(connection) == backend.POSTGRES:
        for rollup in rollups.DAILY:
            for statement in rollups.create_table(rollup):
                schema_editor.execute(statement.as_string(connection.connection))
        return
    for rollup in rollups.DAILY:
        schema_editor.execute(
            rollups.create_continuous_aggregate(rollup).as_string(connection.connection)
        )
        schema_editor.execute(DAILY_POLICY, [rollup.table])
    from observability.analytics import maintenance

    maintenance.sync_timescale_policies(connection)


def drop_daily_rollups(apps, schema_editor):
    timescale = backend.current(schema_editor.connection) == backend.TIMESCALE
    for rollup in rollups.DAILY:
        kind = "MATERIALIZED VIEW" if timescale else "TABLE"
        schema_editor.execute(f"DROP {kind} IF EXISTS {rollup.table} CASCADE")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("observability", "0003_hourly_cagg")]

    operations = [migrations.RunPython(create_daily_rollups, drop_daily_rollups)]
