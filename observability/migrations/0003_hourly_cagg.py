"""Hourly rollups and the latency sketch.

Both backends: the pgvector extension and the sketch functions. Portable: the hourly
rollup tables, the materialisation state and the triggers that mark changed hours.
TimescaleDB: the hourly rollups as continuous aggregates with a refresh policy.

A portable database on a server without pgvector stores sketches as bigint[] pairs
[[bucket, count], ...] merged by the aggregate apm_sketch_merge (ARRAY_SKETCH_FUNCTIONS);
TimescaleDB needs pgvector (its continuous aggregates cannot use a PL/pgSQL aggregate).

The DDL is frozen as this migration first ran it (the live code never generates it):
observability/tests/test_schema.py checks the database has what the code expects.
"""

from django.db import migrations

from observability.migrations._frozen import is_portable, offers_pgvector, run_all

# Bucket of a latency (sketch.bucket_of: 1024 buckets, MIN_MS 0.01, GAMMA 1.018), and
# the sketch of a set of bucket numbers, so that one aggregate expression,
# apm_sketch_of(array_agg(apm_sketch_index(latency_ms))), builds it in a TimescaleDB
# continuous aggregate (one GROUP BY, no PL/pgSQL: its refresh commits as it goes).
# SET search_path: the refresh runs function bodies with a restricted search path, and
# pgvector's types live in the schema current at creation.
SKETCH_FUNCTIONS = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    """CREATE FUNCTION apm_sketch_index(latency double precision) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN latency <= 0.01::double precision THEN 1
               ELSE LEAST(1024, GREATEST(1,
                    ceil(ln(latency / 0.01::double precision)
                         / ln(1.018::double precision))::integer + 1)) END
        $$""",
    """CREATE FUNCTION apm_sketch_of(buckets integer[]) RETURNS sparsevec
        LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT AS $$
        SELECT format('{%s}/1024', string_agg(b || ':' || n, ',' ORDER BY b))::sparsevec
        FROM (SELECT b, count(*) AS n FROM unnest(buckets) AS b GROUP BY b) AS counted
        $$""",
]
DROP_SKETCH_FUNCTIONS = [
    "DROP FUNCTION IF EXISTS apm_sketch_of(integer[])",
    "DROP AGGREGATE IF EXISTS apm_sketch_merge(bigint[])",
    "DROP FUNCTION IF EXISTS apm_sketch_pairs(bigint[])",
    "DROP FUNCTION IF EXISTS apm_sketch_add(bigint[], bigint[])",
    "DROP FUNCTION IF EXISTS apm_sketch_index(double precision)",
]

# Without pgvector: the same bucket function; a sketch is bigint[] pairs, merged by adding
# each pair's count into a dense state (PL/pgSQL keeps the array expanded, no copies)
# and compacted back into pairs.
ARRAY_SKETCH_FUNCTIONS = [
    SKETCH_FUNCTIONS[1],
    """CREATE FUNCTION apm_sketch_add(state bigint[], sketch bigint[]) RETURNS bigint[]
        LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
        DECLARE i integer;
        BEGIN
            IF state IS NULL THEN
                state := array_fill(0::bigint, ARRAY[1024]);
            END IF;
            IF sketch IS NOT NULL THEN
                FOR i IN 1 .. array_length(sketch, 1) LOOP
                    state[sketch[i][1]] := state[sketch[i][1]] + sketch[i][2];
                END LOOP;
            END IF;
            RETURN state;
        END $$""",
    """CREATE FUNCTION apm_sketch_pairs(state bigint[]) RETURNS bigint[]
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT array_agg(ARRAY[b, n] ORDER BY b) FROM unnest(state) WITH ORDINALITY AS c(n, b)
        WHERE n > 0
        $$""",
    """CREATE AGGREGATE apm_sketch_merge(bigint[]) (
        SFUNC = apm_sketch_add, STYPE = bigint[], FINALFUNC = apm_sketch_pairs)""",
]

# Portable: each rollup table with the indexes its readers use (every analytics query
# reads one project's rows in a bucket range; the refresh deletes a bucket range).
PORTABLE_TABLES = [
    'CREATE TABLE "apm_rollup_endpoint_hourly" (bucket timestamptz NOT NULL, project_id bigint NOT NULL, "service" varchar(128) NOT NULL, "endpoint" varchar(512) NOT NULL, "method" varchar(16) NOT NULL, "status_class" smallint NOT NULL, "environment" varchar(64) NOT NULL, hits bigint NOT NULL, apdex_satisfied bigint NOT NULL, apdex_tolerating bigint NOT NULL, latency_sum double precision NOT NULL, latency_min double precision NOT NULL, latency_max double precision NOT NULL, sketch sparsevec(1024) NOT NULL)',
    'CREATE INDEX "apm_rollup_endpoint_hourly_project_bucket" ON "apm_rollup_endpoint_hourly" (project_id, bucket)',
    'CREATE INDEX "apm_rollup_endpoint_hourly_bucket" ON "apm_rollup_endpoint_hourly" (bucket)',
    'CREATE TABLE "apm_rollup_service_hourly" (bucket timestamptz NOT NULL, project_id bigint NOT NULL, "service" varchar(128) NOT NULL, "status_class" smallint NOT NULL, "environment" varchar(64) NOT NULL, hits bigint NOT NULL, apdex_satisfied bigint NOT NULL, apdex_tolerating bigint NOT NULL, latency_sum double precision NOT NULL, latency_min double precision NOT NULL, latency_max double precision NOT NULL, sketch sparsevec(1024) NOT NULL)',
    'CREATE INDEX "apm_rollup_service_hourly_project_bucket" ON "apm_rollup_service_hourly" (project_id, bucket)',
    'CREATE INDEX "apm_rollup_service_hourly_bucket" ON "apm_rollup_service_hourly" (bucket)',
    'CREATE TABLE "apm_rollup_overview_hourly" (bucket timestamptz NOT NULL, project_id bigint NOT NULL, "status_class" smallint NOT NULL, "environment" varchar(64) NOT NULL, hits bigint NOT NULL, apdex_satisfied bigint NOT NULL, apdex_tolerating bigint NOT NULL, latency_sum double precision NOT NULL, latency_min double precision NOT NULL, latency_max double precision NOT NULL, sketch sparsevec(1024) NOT NULL)',
    'CREATE INDEX "apm_rollup_overview_hourly_project_bucket" ON "apm_rollup_overview_hourly" (project_id, bucket)',
    'CREATE INDEX "apm_rollup_overview_hourly_bucket" ON "apm_rollup_overview_hourly" (bucket)',
]
PORTABLE_BOOKKEEPING = [
    # How far each interval is materialised: every bucket before it is in the rollups.
    """CREATE TABLE apm_rollup_state (
        interval text PRIMARY KEY, materialized_until timestamptz NOT NULL)""",
    # Buckets to recompute because rows changed after they were materialised.
    """CREATE TABLE apm_rollup_dirty (
        interval text NOT NULL, bucket timestamptz NOT NULL, PRIMARY KEY (interval, bucket))""",
    # Statement-level triggers with transition tables: one cheap statement per COPY or
    # bulk write marks the closed hours it touched, whatever the writer (ingest, ORM, SQL).
    """CREATE FUNCTION apm_mark_dirty_hours() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO apm_rollup_dirty (interval, bucket)
            SELECT DISTINCT 'hour', date_trunc('hour', time, 'UTC') FROM changed_rows
            WHERE time < date_trunc('hour', clock_timestamp(), 'UTC')
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER apm_dirty_on_insert AFTER INSERT ON api_request
        REFERENCING NEW TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION apm_mark_dirty_hours()""",
    """CREATE TRIGGER apm_dirty_on_delete AFTER DELETE ON api_request
        REFERENCING OLD TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION apm_mark_dirty_hours()""",
    # An update may move a row out of its hour: the old rows' hours, then the new ones'.
    """CREATE TRIGGER apm_dirty_on_update_old AFTER UPDATE ON api_request
        REFERENCING OLD TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION apm_mark_dirty_hours()""",
    """CREATE TRIGGER apm_dirty_on_update_new AFTER UPDATE ON api_request
        REFERENCING NEW TABLE AS changed_rows
        FOR EACH STATEMENT EXECUTE FUNCTION apm_mark_dirty_hours()""",
]
DROP_PORTABLE = [
    "DROP TRIGGER IF EXISTS apm_dirty_on_insert ON api_request",
    "DROP TRIGGER IF EXISTS apm_dirty_on_delete ON api_request",
    "DROP TRIGGER IF EXISTS apm_dirty_on_update_old ON api_request",
    "DROP TRIGGER IF EXISTS apm_dirty_on_update_new ON api_request",
    "DROP FUNCTION IF EXISTS apm_mark_dirty_hours()",
    "DROP TABLE IF EXISTS apm_rollup_dirty",
    "DROP TABLE IF EXISTS apm_rollup_state",
    "DROP TABLE IF EXISTS apm_rollup_endpoint_hourly",
    "DROP TABLE IF EXISTS apm_rollup_service_hourly",
    "DROP TABLE IF EXISTS apm_rollup_overview_hourly",
]

# TimescaleDB: continuous aggregates of the hypertable with real-time aggregation, and
# a refresh policy: recompute the last 3 days (late data) every 5 minutes; the open hour
# is served by real-time aggregation.
TIMESCALE_AGGREGATES = [
    'CREATE MATERIALIZED VIEW "apm_rollup_endpoint_hourly" WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT time_bucket(\'1 hour\', time) AS bucket, project_id, service AS "service", endpoint AS "endpoint", method AS "method", (status_code / 100)::smallint AS "status_class", environment AS "environment", count(*) AS hits, sum(CASE WHEN status_code < 500 AND latency_ms <= apdex_t_ms THEN 1 ELSE 0 END)::bigint AS apdex_satisfied, sum(CASE WHEN status_code < 500 AND latency_ms > apdex_t_ms AND latency_ms <= 4 * apdex_t_ms THEN 1 ELSE 0 END)::bigint AS apdex_tolerating, sum(latency_ms) AS latency_sum, min(latency_ms) AS latency_min, max(latency_ms) AS latency_max, apm_sketch_of(array_agg(apm_sketch_index(latency_ms))) AS sketch FROM api_request GROUP BY time_bucket(\'1 hour\', "time"), "project_id", "service", "endpoint", "method", "status_class", "environment" WITH NO DATA',
    'CREATE MATERIALIZED VIEW "apm_rollup_service_hourly" WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT time_bucket(\'1 hour\', time) AS bucket, project_id, service AS "service", (status_code / 100)::smallint AS "status_class", environment AS "environment", count(*) AS hits, sum(CASE WHEN status_code < 500 AND latency_ms <= apdex_t_ms THEN 1 ELSE 0 END)::bigint AS apdex_satisfied, sum(CASE WHEN status_code < 500 AND latency_ms > apdex_t_ms AND latency_ms <= 4 * apdex_t_ms THEN 1 ELSE 0 END)::bigint AS apdex_tolerating, sum(latency_ms) AS latency_sum, min(latency_ms) AS latency_min, max(latency_ms) AS latency_max, apm_sketch_of(array_agg(apm_sketch_index(latency_ms))) AS sketch FROM api_request GROUP BY time_bucket(\'1 hour\', "time"), "project_id", "service", "status_class", "environment" WITH NO DATA',
    'CREATE MATERIALIZED VIEW "apm_rollup_overview_hourly" WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS SELECT time_bucket(\'1 hour\', time) AS bucket, project_id, (status_code / 100)::smallint AS "status_class", environment AS "environment", count(*) AS hits, sum(CASE WHEN status_code < 500 AND latency_ms <= apdex_t_ms THEN 1 ELSE 0 END)::bigint AS apdex_satisfied, sum(CASE WHEN status_code < 500 AND latency_ms > apdex_t_ms AND latency_ms <= 4 * apdex_t_ms THEN 1 ELSE 0 END)::bigint AS apdex_tolerating, sum(latency_ms) AS latency_sum, min(latency_ms) AS latency_min, max(latency_ms) AS latency_max, apm_sketch_of(array_agg(apm_sketch_index(latency_ms))) AS sketch FROM api_request GROUP BY time_bucket(\'1 hour\', "time"), "project_id", "status_class", "environment" WITH NO DATA',
]
TIMESCALE_POLICIES = [
    "SELECT add_continuous_aggregate_policy('apm_rollup_endpoint_hourly', start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes')",
    "SELECT add_continuous_aggregate_policy('apm_rollup_service_hourly', start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes')",
    "SELECT add_continuous_aggregate_policy('apm_rollup_overview_hourly', start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes')",
]
DROP_TIMESCALE = [
    "DROP MATERIALIZED VIEW IF EXISTS apm_rollup_endpoint_hourly CASCADE",
    "DROP MATERIALIZED VIEW IF EXISTS apm_rollup_service_hourly CASCADE",
    "DROP MATERIALIZED VIEW IF EXISTS apm_rollup_overview_hourly CASCADE",
]


def create_hourly_rollups(apps, schema_editor):
    connection = schema_editor.connection
    if not offers_pgvector(connection):
        if not is_portable(connection):
            raise RuntimeError("TimescaleDB needs the pgvector extension (vector) for sketches")
        tables = [statement.replace("sparsevec(1024)", "bigint[]") for statement in PORTABLE_TABLES]
        run_all(schema_editor, ARRAY_SKETCH_FUNCTIONS + tables + PORTABLE_BOOKKEEPING)
        return
    run_all(schema_editor, SKETCH_FUNCTIONS)
    if is_portable(connection):
        run_all(schema_editor, PORTABLE_TABLES + PORTABLE_BOOKKEEPING)
    else:
        run_all(schema_editor, TIMESCALE_AGGREGATES + TIMESCALE_POLICIES)


def drop_hourly_rollups(apps, schema_editor):
    portable = is_portable(schema_editor.connection)
    run_all(schema_editor, (DROP_PORTABLE if portable else DROP_TIMESCALE) + DROP_SKETCH_FUNCTIONS)


class Migration(migrations.Migration):
    # Continuous aggregates cannot be created inside a transaction block.
    atomic = False

    dependencies = [("observability", "0002_timescale")]

    operations = [migrations.RunPython(create_hourly_rollups, drop_hourly_rollups)]
