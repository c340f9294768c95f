"""Daily rollups, and on TimescaleDB the retention and compression policies.

Portable: the daily rollup tables (recomputed from the hourly ones by the refresh
commands; retention is applied by `apply_retention` / `run_jobs`). TimescaleDB:
hierarchical continuous aggregates on the hourly ones, their refresh policy, and the
retention and compression policies for the retention settings at migration time
(`apply_retention` sets them again from the settings of the day).

The DDL is frozen as this migration first ran it (the live code never generates it).
"""

from django.conf import settings
from django.db import migrations

from observability.migrations._frozen import is_portable, run_all, sketches_in_pgvector

PORTABLE_TABLES = [
    'CREATE TABLE "apm_rollup_endpoint_daily" (bucket timestamptz NOT NULL, project_id bigint NOT NULL, "service" varchar(128) NOT NULL, "endpoint" varchar(512) NOT NULL, "method" varchar(16) NOT NULL, "status_class" smallint NOT NULL, "environment" varchar(64) NOT NULL, hits bigint NOT NULL, apdex_satisfied bigint NOT NULL, apdex_tolerating bigint NOT NULL, latency_sum double precision NOT NULL, latency_min double precision NOT NULL, latency_max double precision NOT NULL, sketch sparsevec(1024) NOT NULL)',
    'CREATE INDEX "apm_rollup_endpoint_daily_project_bucket" ON "apm_rollup_endpoint_daily" (project_id, bucket)',
    'CREATE INDEX "apm_rollup_endpoint_daily_bucket" ON "apm_rollup_endpoint_daily" (bucket)',
    'CREATE TABLE "apm_rollup_service_daily" (bucket timestamptz NOT NULL, project_id bigint NOT NULL, "service" varchar(128) NOT NULL, "status_class" smallint NOT NULL, "environment" varchar(64) NOT NULL, hits bigint NOT NULL, apdex_satisfied bigint NOT NULL, apdex_tolerating bigint NOT NULL, latency_sum double precision NOT NULL, latency_min double precision NOT NULL, latency_max double precision NOT NULL, sketch sparsevec(1024) NOT NULL)',
    'CREATE INDEX "apm_rollup_service_daily_project_bucket" ON "apm_rollup_service_daily" (project_id, bucket)',
    'CREATE INDEX "apm_rollup_service_daily_bucket" ON "apm_rollup_service_daily" (bucket)',
    'CREATE TABLE "apm_rollup_overview_daily" (bucket timestamptz NOT NULL, project_id bigint NOT NULL, "status_class" smallint NOT NULL, "environment" varchar(64) NOT NULL, hits bigint NOT NULL, apdex_satisfied bigint NOT NULL, apdex_tolerating bigint NOT NULL, latency_sum double precision NOT NULL, latency_min double precision NOT NULL, latency_max double precision NOT NULL, sketch sparsevec(1024) NOT NULL)',
    'CREATE INDEX "apm_rollup_overview_daily_project_bucket" ON "apm_rollup_overview_daily" (project_id, bucket)',
    'CREATE INDEX "apm_rollup_overview_daily_bucket" ON "apm_rollup_overview_daily" (bucket)',
]
DROP_PORTABLE = [
    "DROP TABLE IF EXISTS apm_rollup_endpoint_daily",
    "DROP TABLE IF EXISTS apm_rollup_service_daily",
    "DROP TABLE IF EXISTS apm_rollup_overview_daily",
]

TIMESCALE_AGGREGATES = [
    'CREATE MATERIALIZED VIEW "apm_rollup_endpoint_daily" WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT time_bucket(\'1 day\', bucket) AS bucket, project_id, "service" AS "service", "endpoint" AS "endpoint", "method" AS "method", "status_class" AS "status_class", "environment" AS "environment", sum(hits)::bigint AS hits, sum(apdex_satisfied)::bigint AS apdex_satisfied, sum(apdex_tolerating)::bigint AS apdex_tolerating, sum(latency_sum) AS latency_sum, min(latency_min) AS latency_min, max(latency_max) AS latency_max, sum(sketch::vector)::sparsevec AS sketch FROM "apm_rollup_endpoint_hourly" GROUP BY time_bucket(\'1 day\', "bucket"), "project_id", "service", "endpoint", "method", "status_class", "environment" WITH NO DATA',
    'CREATE MATERIALIZED VIEW "apm_rollup_service_daily" WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT time_bucket(\'1 day\', bucket) AS bucket, project_id, "service" AS "service", "status_class" AS "status_class", "environment" AS "environment", sum(hits)::bigint AS hits, sum(apdex_satisfied)::bigint AS apdex_satisfied, sum(apdex_tolerating)::bigint AS apdex_tolerating, sum(latency_sum) AS latency_sum, min(latency_min) AS latency_min, max(latency_max) AS latency_max, sum(sketch::vector)::sparsevec AS sketch FROM "apm_rollup_service_hourly" GROUP BY time_bucket(\'1 day\', "bucket"), "project_id", "service", "status_class", "environment" WITH NO DATA',
    'CREATE MATERIALIZED VIEW "apm_rollup_overview_daily" WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT time_bucket(\'1 day\', bucket) AS bucket, project_id, "status_class" AS "status_class", "environment" AS "environment", sum(hits)::bigint AS hits, sum(apdex_satisfied)::bigint AS apdex_satisfied, sum(apdex_tolerating)::bigint AS apdex_tolerating, sum(latency_sum) AS latency_sum, min(latency_min) AS latency_min, max(latency_max) AS latency_max, sum(sketch::vector)::sparsevec AS sketch FROM "apm_rollup_overview_hourly" GROUP BY time_bucket(\'1 day\', "bucket"), "project_id", "status_class", "environment" WITH NO DATA',
]
DAILY_POLICY = (
    "SELECT add_continuous_aggregate_policy(%s, start_offset => INTERVAL '7 days', "
    "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour')"
)
DAILY = ["apm_rollup_endpoint_daily", "apm_rollup_service_daily", "apm_rollup_overview_daily"]
HOURLY = ["apm_rollup_endpoint_hourly", "apm_rollup_service_hourly", "apm_rollup_overview_hourly"]
RETENTION_POLICY = "SELECT add_retention_policy(%s, drop_after => make_interval(days => %s))"
# Compression of raw chunks: segment by project (every query filters on it), newest
# first inside a segment.
ENABLE_COMPRESSION = (
    "ALTER TABLE api_request SET (timescaledb.compress, "
    "timescaledb.compress_segmentby = 'project_id', timescaledb.compress_orderby = 'time DESC')"
)
COMPRESSION_POLICY = (
    "SELECT add_compression_policy('api_request', compress_after => make_interval(days => %s))"
)
DROP_TIMESCALE = [
    "DROP MATERIALIZED VIEW IF EXISTS apm_rollup_endpoint_daily CASCADE",
    "DROP MATERIALIZED VIEW IF EXISTS apm_rollup_service_daily CASCADE",
    "DROP MATERIALIZED VIEW IF EXISTS apm_rollup_overview_daily CASCADE",
]


def create_daily_rollups(apps, schema_editor):
    if is_portable(schema_editor.connection):
        tables = PORTABLE_TABLES
        if not sketches_in_pgvector(schema_editor.connection):  # as 0003 chose
            tables = [statement.replace("sparsevec(1024)", "bigint[]") for statement in tables]
        run_all(schema_editor, tables)
        return
    run_all(schema_editor, TIMESCALE_AGGREGATES)
    run = schema_editor.execute
    for table in DAILY:
        run(DAILY_POLICY, [table])
    retention = [("api_request", settings.APM_RAW_RETENTION_DAYS)]
    retention += [(table, settings.APM_HOURLY_RETENTION_DAYS) for table in HOURLY]
    retention += [(table, settings.APM_DAILY_RETENTION_DAYS) for table in DAILY]
    for relation, days in retention:
        run(RETENTION_POLICY, [relation, days])
    run(ENABLE_COMPRESSION, None)
    run(COMPRESSION_POLICY, [settings.APM_COMPRESS_AFTER_DAYS])


def drop_daily_rollups(apps, schema_editor):
    run_all(
        schema_editor, DROP_PORTABLE if is_portable(schema_editor.connection) else DROP_TIMESCALE
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("observability", "0003_hourly_cagg")]

    operations = [migrations.RunPython(create_daily_rollups, drop_daily_rollups)]
