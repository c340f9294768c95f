"""Hourly rollups and the latency sketch.

Both backends: the pgvector extension and the sketch functions. Portable: the hourly
rollup tables, the materialisation state and the triggers that mark changed hours.
TimescaleDB: the hourly rollups as continuous aggregates with a refresh policy.
"""

from django.db import migrations

from observability.analytics import backend, rollups

# TimescaleDB refresh policy: recompute the last 3 days (late data) every 5 minutes;
# the open hour is served by real-time aggregation.
HOURLY_POLICY = (
    "SELECT add_continuous_aggregate_policy(%s, start_offset => INTERVAL '3 days', "
    "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes')"
)


def create_hourly_rollups(apps, schema_editor):
    run = schema_editor.execute
    run("CREATE EXTENSION IF NOT EXISTS vector")
    for statement in rollups.SKETCH_FUNCTIONS:
        run(statement)
    connection = schema_editor.connection
    if backend.current(connection) == backend.TIMESCALE:
        for rollup in rollups.HOURLY:
            run(rollups.create_continuous_aggregate(rollup).as_string(connection.connection))
            run(HOURLY_POLICY, [rollup.table])
        return
    for rollup in rollups.HOURLY:
        for statement in rollups.create_table(rollup):
            run(statement.as_string(connection.connection))
    for statement in rollups.PORTABLE_BOOKKEEPING:
        run(statement)


def drop_hourly_rollups(apps, schema_editor):
    connection = schema_editor.connection
    timescale = backend.current(connection) == backend.TIMESCALE
    for rollup in rollups.HOURLY:
        kind = "MATERIALIZED VIEW" if timescale else "TABLE"
        schema_editor.execute(f"DROP {kind} IF EXISTS {rollup.table} CASCADE")
    for statement in rollups.DROP_PORTABLE_BOOKKEEPING + rollups.DROP_SKETCH_FUNCTIONS:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    # Continuous aggregates cannot be created inside a transaction block.
    atomic = False

    dependencies = [("observability", "0002_timescale")]

    operations = [migrations.RunPython(create_hourly_rollups, drop_hourly_rollups)]
