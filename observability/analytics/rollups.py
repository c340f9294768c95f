"""Hourly and daily rollups of `api_request`, on both analytics backends.

Rollups exist at three grains (the dimensions they keep) and two intervals:

    grain     dimensions                                            tables (_hourly, _daily)
    endpoint  service, endpoint, method, status_class, environment  apm_rollup_endpoint
    service   service, status_class, environment                    apm_rollup_service
    overview  status_class, environment                             apm_rollup_overview

Each row holds hits, Apdex satisfied/tolerating counts, latency sum/min/max and the
latency sketch (sketch.py). Queries read the coarsest grain that has the dimensions
they filter or group by: merging sketches costs per row, and the overview of a month
is ~2,000 rows where the endpoint grain has hundreds of thousands.

Portable backend: plain tables. Hourly rollups are recomputed from raw rows for new
closed hours (past the watermark) and for hours that statement triggers marked dirty
(late or deleted rows); daily rollups are recomputed from hourly ones for new days and
days whose hours changed. TimescaleDB: the same relations are continuous aggregates
(hourly on the hypertable, daily on the hourly ones) with refresh policies and
real-time aggregation.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from psycopg import sql

from observability.analytics.sketch import BUCKETS


@dataclasses.dataclass(frozen=True)
class Grain:
    name: str
    dims: tuple[str, ...]


ENDPOINT = Grain("endpoint", ("service", "endpoint", "method", "status_class", "environment"))
SERVICE = Grain("service", ("service", "status_class", "environment"))
OVERVIEW = Grain("overview", ("status_class", "environment"))
GRAINS_COARSEST_FIRST = (OVERVIEW, SERVICE, ENDPOINT)

# How each dimension is computed from a raw row.
RAW_DIMENSION = {
    "service": sql.SQL("service"),
    "endpoint": sql.SQL("endpoint"),
    "method": sql.SQL("method"),
    "status_class": sql.SQL("(status_code / 100)::smallint"),
    "environment": sql.SQL("environment"),
}
DIMENSION_TYPES = {
    "service": "varchar(128)",
    "endpoint": "varchar(512)",
    "method": "varchar(16)",
    "status_class": "smallint",
    "environment": "varchar(64)",
}
MEASURES = ("hits", "apdex_satisfied", "apdex_tolerating", "latency_sum", "latency_min",
            "latency_max", "sketch")  # fmt: skip

HOUR = "hour"
DAY = "day"
STEP = {HOUR: timedelta(hours=1), DAY: timedelta(days=1)}


@dataclasses.dataclass(frozen=True)
class Rollup:
    grain: Grain
    interval: str

    @property
    def table(self) -> str:
        suffix = "hourly" if self.interval == HOUR else "daily"
        return f"apm_rollup_{self.grain.name}_{suffix}"

    @property
    def source(self) -> Rollup | None:
        """Portable refresh source: hourly endpoint rows come from raw rows; other hourly
        grains from the hourly endpoint rollup; daily rollups from their hourly one."""
        if self.interval == DAY:
            return Rollup(self.grain, HOUR)
        return None if self.grain == ENDPOINT else Rollup(ENDPOINT, HOUR)


HOURLY = tuple(Rollup(grain, HOUR) for grain in (ENDPOINT, SERVICE, OVERVIEW))
DAILY = tuple(Rollup(grain, DAY) for grain in (ENDPOINT, SERVICE, OVERVIEW))


# --- SQL fragments ---------------------------------------------------------------------

# Two-level aggregation of raw rows: count per (group, sketch bucket) with C-level
# aggregates, then one sparsevec per group built from the non-empty buckets. Much faster
# than a per-row sketch function; used by the portable refresh and by queries for the
# not-yet-materialised tail. No comments inside the SQL: psycopg reads every % in it as
# a placeholder, so format()'s own placeholder is written %%s.
RAW_AGGREGATE = """
SELECT {outer_columns},
       sum(n)::bigint AS hits,
       sum(satisfied)::bigint AS apdex_satisfied,
       sum(tolerating)::bigint AS apdex_tolerating,
       sum(latency_sum) AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       format('{{%%s}}/{buckets}', string_agg(sketch_bucket || ':' || n, ','))::sparsevec AS sketch
FROM (
    SELECT {inner_columns},
           apm_sketch_index(latency_ms) AS sketch_bucket,
           count(*) AS n,
           count(*) FILTER (WHERE status_code < 500 AND latency_ms <= apdex_t_ms) AS satisfied,
           count(*) FILTER (WHERE status_code < 500 AND latency_ms > apdex_t_ms
                                  AND latency_ms <= 4 * apdex_t_ms) AS tolerating,
           sum(latency_ms) AS latency_sum,
           min(latency_ms) AS latency_min,
           max(latency_ms) AS latency_max
    FROM api_request
    WHERE {where}
    GROUP BY {inner_group}
) AS per_bucket
GROUP BY {outer_group}
"""

# Merge rollup rows: counts add, sketches add (pgvector sum, in C).
ROLLUP_AGGREGATE = """
SELECT {outer_columns},
       sum(hits)::bigint AS hits,
       sum(apdex_satisfied)::bigint AS apdex_satisfied,
       sum(apdex_tolerating)::bigint AS apdex_tolerating,
       sum(latency_sum) AS latency_sum,
       min(latency_min) AS latency_min,
       max(latency_max) AS latency_max,
       sum(sketch::vector)::sparsevec AS sketch
FROM {source}
WHERE {where}
GROUP BY {outer_group}
"""


def raw_aggregate(columns: list[tuple[str, sql.Composable]], where: sql.Composable) -> sql.Composed:
    """Aggregate raw rows into rollup-shaped rows, grouped by `columns` (name, expression)."""
    names = [sql.Identifier(name) for name, _ in columns]
    inner = [sql.SQL("{} AS {}").format(expr, sql.Identifier(name)) for name, expr in columns]
    inner_group = sql.SQL(", ").join(
        [*(sql.SQL(str(n)) for n in range(1, len(columns) + 1)), sql.SQL("sketch_bucket")]
    )
    return sql.SQL(RAW_AGGREGATE).format(
        outer_columns=sql.SQL(", ").join(names),
        inner_columns=sql.SQL(", ").join(inner),
        inner_group=inner_group,
        outer_group=sql.SQL(", ").join(names),
        where=where,
        buckets=sql.SQL(str(BUCKETS)),
    )


def rollup_aggregate(
    source: str, columns: list[tuple[str, sql.Composable]], where: sql.Composable
) -> sql.Composed:
    outer = [sql.SQL("{} AS {}").format(expr, sql.Identifier(name)) for name, expr in columns]
    return sql.SQL(ROLLUP_AGGREGATE).format(
        outer_columns=sql.SQL(", ").join(outer),
        source=sql.Identifier(source),
        where=where,
        outer_group=sql.SQL(", ").join(sql.SQL(str(n)) for n in range(1, len(columns) + 1)),
    )


def truncate(interval: str, column: str) -> sql.Composed:
    """The UTC bucket start of `column` (date_trunc in UTC, as time_bucket does)."""
    return sql.SQL("date_trunc({}, {}, 'UTC')").format(
        sql.Literal(interval), sql.Identifier(column)
    )


def refresh_select(rollup: Rollup) -> sql.Composed:
    """SELECT of one rollup's rows for [%(start)s, %(end)s) on the portable backend."""
    source = rollup.source
    if source is None:
        columns = [
            ("bucket", truncate(rollup.interval, "time")),
            ("project_id", sql.SQL("project_id")),
        ]
        columns += [(dim, RAW_DIMENSION[dim]) for dim in rollup.grain.dims]
        where = sql.SQL("time >= %(start)s AND time < %(end)s")
        return raw_aggregate(columns, where)
    columns = [
        ("bucket", truncate(rollup.interval, "bucket")),
        ("project_id", sql.SQL("project_id")),
    ]
    columns += [(dim, sql.Identifier(dim)) for dim in rollup.grain.dims]
    where = sql.SQL("bucket >= %(start)s AND bucket < %(end)s")
    return rollup_aggregate(source.table, columns, where)


def refresh_statements(rollup: Rollup) -> list[sql.Composed]:
    """Recompute one rollup for [%(start)s, %(end)s): delete the range, insert it anew."""
    columns = ["bucket", "project_id", *rollup.grain.dims, *MEASURES]
    return [
        sql.SQL("DELETE FROM {} WHERE bucket >= %(start)s AND bucket < %(end)s").format(
            sql.Identifier(rollup.table)
        ),
        sql.SQL("INSERT INTO {} ({}) {}").format(
            sql.Identifier(rollup.table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            refresh_select(rollup),
        ),
    ]


# --- DDL ---------------------------------------------------------------------------------


def create_table(rollup: Rollup) -> list[sql.Composed]:
    """Portable backend: the rollup table and the index its queries use."""
    dims = [
        sql.SQL("{} {} NOT NULL").format(sql.Identifier(dim), sql.SQL(DIMENSION_TYPES[dim]))
        for dim in rollup.grain.dims
    ]
    table = sql.Identifier(rollup.table)
    return [
        sql.SQL(
            "CREATE TABLE {table} (bucket timestamptz NOT NULL, project_id bigint NOT NULL, "
            "{dims}, hits bigint NOT NULL, apdex_satisfied bigint NOT NULL, "
            "apdex_tolerating bigint NOT NULL, latency_sum double precision NOT NULL, "
            "latency_min double precision NOT NULL, latency_max double precision NOT NULL, "
            "sketch sparsevec({buckets}) NOT NULL)"
        ).format(table=table, dims=sql.SQL(", ").join(dims), buckets=sql.SQL(str(BUCKETS))),
        # Every analytics query reads one project's rows in a bucket range (and the refresh
        # deletes a bucket range).
        sql.SQL("CREATE INDEX {} ON {} (project_id, bucket)").format(
            sql.Identifier(f"{rollup.table}_project_bucket"), table
        ),
        sql.SQL("CREATE INDEX {} ON {} (bucket)").format(
            sql.Identifier(f"{rollup.table}_bucket"), table
        ),
    ]


def create_continuous_aggregate(rollup: Rollup) -> sql.Composed:
    """TimescaleDB: the rollup as a continuous aggregate with real-time aggregation.

    Hourly ones aggregate the hypertable, building the sketch with apm_sketch_of (a
    continuous aggregate is one GROUP BY, so the two-level raw query cannot be used);
    daily ones aggregate their hourly one (a hierarchical continuous aggregate).
    """
    width = sql.Literal("1 hour" if rollup.interval == HOUR else "1 day")
    dims = [sql.SQL("{} AS {}").format(
        RAW_DIMENSION[dim] if rollup.interval == HOUR else sql.Identifier(dim), sql.Identifier(dim)
    ) for dim in rollup.grain.dims]  # fmt: skip
    # The time bucket by its expression: in the daily view `bucket` would name the hourly
    # source column, not the output.
    source_time = sql.Identifier("time" if rollup.interval == HOUR else "bucket")
    group = sql.SQL(", ").join(
        [
            sql.SQL("time_bucket({}, {})").format(width, source_time),
            *(sql.Identifier(dim) for dim in ("project_id", *rollup.grain.dims)),
        ]
    )
    if rollup.interval == HOUR:
        body = sql.SQL(
            "SELECT time_bucket({width}, time) AS bucket, project_id, {dims}, "
            "count(*) AS hits, "
            "sum(CASE WHEN status_code < 500 AND latency_ms <= apdex_t_ms "
            "THEN 1 ELSE 0 END)::bigint AS apdex_satisfied, "
            "sum(CASE WHEN status_code < 500 AND latency_ms > apdex_t_ms "
            "AND latency_ms <= 4 * apdex_t_ms THEN 1 ELSE 0 END)::bigint AS apdex_tolerating, "
            "sum(latency_ms) AS latency_sum, min(latency_ms) AS latency_min, "
            "max(latency_ms) AS latency_max, "
            "apm_sketch_of(array_agg(apm_sketch_index(latency_ms))) AS sketch "
            "FROM api_request GROUP BY {group}"
        )
    else:
        body = sql.SQL(
            "SELECT time_bucket({width}, bucket) AS bucket, project_id, {dims}, "
            "sum(hits)::bigint AS hits, sum(apdex_satisfied)::bigint AS apdex_satisfied, "
            "sum(apdex_tolerating)::bigint AS apdex_tolerating, sum(latency_sum) AS latency_sum, "
            "min(latency_min) AS latency_min, max(latency_max) AS latency_max, "
            "sum(sketch::vector)::sparsevec AS sketch FROM {source} GROUP BY {group}"
        )
    return sql.SQL(
        "CREATE MATERIALIZED VIEW {table} WITH (timescaledb.continuous, "
        "timescaledb.materialized_only = false) AS {body} WITH NO DATA"
    ).format(
        table=sql.Identifier(rollup.table),
        body=body.format(
            width=width, dims=sql.SQL(", ").join(dims), group=group,
            source=sql.Identifier(Rollup(rollup.grain, HOUR).table),
        ),
    )  # fmt: skip


# --- Support objects shared by both backends and portable-only bookkeeping ------------

SKETCH_FUNCTIONS = [
    # Bucket of a latency; mirrors sketch.bucket_of (explicit double precision constants
    # so PostgreSQL computes exactly what Python computes).
    f"""CREATE FUNCTION apm_sketch_index(latency double precision) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN latency <= 0.01::double precision THEN 1
               ELSE LEAST({BUCKETS}, GREATEST(1,
                    ceil(ln(latency / 0.01::double precision)
                         / ln(1.018::double precision))::integer + 1)) END
        $$""",
    # The sketch of a set of bucket numbers, so that one aggregate expression,
    # apm_sketch_of(array_agg(apm_sketch_index(latency_ms))), builds it in a TimescaleDB
    # continuous aggregate (one GROUP BY, no PL/pgSQL: its refresh commits as it goes).
    # SET search_path: the refresh runs function bodies with a restricted search path,
    # and pgvector's types live in the schema current at creation. (%%s: the migration
    # executes this with psycopg parameters, so format()'s placeholder is escaped.)
    f"""CREATE FUNCTION apm_sketch_of(buckets integer[]) RETURNS sparsevec
        LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT AS $$
        SELECT format('{{%%s}}/{BUCKETS}', string_agg(b || ':' || n, ',' ORDER BY b))::sparsevec
        FROM (SELECT b, count(*) AS n FROM unnest(buckets) AS b GROUP BY b) AS counted
        $$""",  # noqa: S608 - only constants are formatted in
]
DROP_SKETCH_FUNCTIONS = [
    "DROP FUNCTION IF EXISTS apm_sketch_of(integer[])",
    "DROP FUNCTION IF EXISTS apm_sketch_index(double precision)",
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
DROP_PORTABLE_BOOKKEEPING = [
    "DROP TRIGGER IF EXISTS apm_dirty_on_insert ON api_request",
    "DROP TRIGGER IF EXISTS apm_dirty_on_delete ON api_request",
    "DROP TRIGGER IF EXISTS apm_dirty_on_update_old ON api_request",
    "DROP TRIGGER IF EXISTS apm_dirty_on_update_new ON api_request",
    "DROP FUNCTION IF EXISTS apm_mark_dirty_hours()",
    "DROP TABLE IF EXISTS apm_rollup_dirty",
    "DROP TABLE IF EXISTS apm_rollup_state",
]


def hour_floor(moment: datetime) -> datetime:
    """Start of the UTC hour (buckets are UTC whatever the offset of `moment`)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_floor(moment: datetime) -> datetime:
    """Start of the UTC day."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def floor_to(interval: str, moment: datetime) -> datetime:
    return hour_floor(moment) if interval == HOUR else day_floor(moment)
