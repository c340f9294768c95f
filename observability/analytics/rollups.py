"""Hourly and daily rollups of `api_request`, on both analytics backends.

Rollups exist at three grains (the dimensions they keep) and two intervals:

    grain     dimensions                                            tables (_hourly, _daily)
    endpoint  service, endpoint, method, status_class, environment  apm_rollup_endpoint
    service   service, status_class, environment                    apm_rollup_service
    overview  status_class, environment                             apm_rollup_overview

Each row holds the MEASURES below and the latency sketch (sketch.py). Queries read the
coarsest grain that has the dimensions they filter or group by: merging sketches costs
per row, and the overview of a month is ~2,000 rows where the endpoint grain has
hundreds of thousands.

Portable backend: plain tables, recomputed by refresh.py. TimescaleDB: the same
relations are continuous aggregates. Their DDL is frozen in the migrations (0003, 0004);
`expected_columns` is what this code reads, and a test checks the database has it.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from psycopg import sql

from observability.analytics.sketches import SketchStore


@dataclasses.dataclass(frozen=True)
class Grain:
    name: str
    dims: tuple[str, ...]


ENDPOINT = Grain("endpoint", ("service", "endpoint", "method", "status_class", "environment"))
SERVICE = Grain("service", ("service", "status_class", "environment"))
OVERVIEW = Grain("overview", ("status_class", "environment"))
GRAINS_COARSEST_FIRST = (OVERVIEW, SERVICE, ENDPOINT)

# How each dimension is computed from a raw row, and its column type in the rollups.
RAW_DIMENSION = {
    "service": sql.SQL("service"),
    "endpoint": sql.SQL("endpoint"),
    "method": sql.SQL("method"),
    "status_class": sql.SQL("(status_code / 100)::smallint"),
    "environment": sql.SQL("environment"),
}
DIMENSION_TYPES = {
    "service": "character varying(128)",
    "endpoint": "character varying(512)",
    "method": "character varying(16)",
    "status_class": "smallint",
    "environment": "character varying(64)",
}


@dataclasses.dataclass(frozen=True)
class Measure:
    """A rollup column: how raw rows make it, and how rollup rows merge into one."""

    name: str
    type: str
    raw: str  # aggregate over api_request rows
    merge: str  # aggregate over rows that already hold this measure (same column name)


MEASURES = (
    Measure("hits", "bigint", "count(*)", "sum(hits)::bigint"),
    Measure(
        "apdex_satisfied", "bigint",
        "count(*) FILTER (WHERE status_code < 500 AND latency_ms <= apdex_t_ms)",
        "sum(apdex_satisfied)::bigint",
    ),
    Measure(
        "apdex_tolerating", "bigint",
        "count(*) FILTER (WHERE status_code < 500 AND latency_ms > apdex_t_ms "
        "AND latency_ms <= 4 * apdex_t_ms)",
        "sum(apdex_tolerating)::bigint",
    ),
    Measure("latency_sum", "double precision", "sum(latency_ms)", "sum(latency_sum)"),
    Measure("latency_min", "double precision", "min(latency_ms)", "min(latency_min)"),
    Measure("latency_max", "double precision", "max(latency_ms)", "max(latency_max)"),
)  # fmt: skip
SKETCH_COLUMN = "sketch"  # its type and merge depend on the database: sketches.py

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

    def expected_columns(self, store: SketchStore) -> dict[str, str]:
        """Column -> type, as the queries and the portable refresh read and write them."""
        return {
            "bucket": "timestamp with time zone",
            "project_id": "bigint",
            **{dim: DIMENSION_TYPES[dim] for dim in self.grain.dims},
            **{measure.name: measure.type for measure in MEASURES},
            SKETCH_COLUMN: store.column_type,
        }


HOURLY = tuple(Rollup(grain, HOUR) for grain in (ENDPOINT, SERVICE, OVERVIEW))
DAILY = tuple(Rollup(grain, DAY) for grain in (ENDPOINT, SERVICE, OVERVIEW))
ALL = HOURLY + DAILY


def of_interval(interval: str) -> tuple[Rollup, ...]:
    return HOURLY if interval == HOUR else DAILY


# --- SQL fragments ---------------------------------------------------------------------

# Two-level aggregation of raw rows: the measures per (group, sketch bucket) with C-level
# aggregates, then merged per group, with one sketch built from the non-empty buckets
# (their hit counts). Much faster than a per-row sketch function; used by the portable
# refresh and by queries for the not-yet-materialised tail.
RAW_AGGREGATE = """
SELECT {outer_columns}, {merged}, {build_sketch} AS sketch
FROM (
    SELECT {inner_columns}, apm_sketch_index(latency_ms) AS sketch_bucket, {raw}
    FROM api_request
    WHERE {where}
    GROUP BY {inner_group}
) AS per_bucket
GROUP BY {outer_group}
"""

# Merge rollup rows: measures merge, sketches add.
ROLLUP_AGGREGATE = """
SELECT {outer_columns}, {merged}, {merge_sketches} AS sketch
FROM {source}
WHERE {where}
GROUP BY {outer_group}
"""


def measure_columns(kind: str) -> sql.Composed:
    """Every measure as `<raw or merge expression> AS <name>`."""
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.SQL(getattr(m, kind)), sql.Identifier(m.name))
        for m in MEASURES
    )


def raw_aggregate(
    columns: list[tuple[str, sql.Composable]], where: sql.Composable, store: SketchStore
) -> sql.Composed:
    """Aggregate raw rows into rollup-shaped rows, grouped by `columns` (name, expression)."""
    names = [sql.Identifier(name) for name, _ in columns]
    inner = [sql.SQL("{} AS {}").format(expr, sql.Identifier(name)) for name, expr in columns]
    inner_group = sql.SQL(", ").join(
        [*(sql.SQL(str(n)) for n in range(1, len(columns) + 1)), sql.SQL("sketch_bucket")]
    )
    return sql.SQL(RAW_AGGREGATE).format(
        outer_columns=sql.SQL(", ").join(names),
        merged=measure_columns("merge"),
        build_sketch=sql.SQL(store.build),
        inner_columns=sql.SQL(", ").join(inner),
        raw=measure_columns("raw"),
        where=where,
        inner_group=inner_group,
        outer_group=sql.SQL(", ").join(names),
    )


def rollup_aggregate(
    source: str,
    columns: list[tuple[str, sql.Composable]],
    where: sql.Composable,
    store: SketchStore,
) -> sql.Composed:
    outer = [sql.SQL("{} AS {}").format(expr, sql.Identifier(name)) for name, expr in columns]
    return sql.SQL(ROLLUP_AGGREGATE).format(
        outer_columns=sql.SQL(", ").join(outer),
        merged=measure_columns("merge"),
        merge_sketches=sql.SQL(store.merge),
        source=sql.Identifier(source),
        where=where,
        outer_group=sql.SQL(", ").join(sql.SQL(str(n)) for n in range(1, len(columns) + 1)),
    )


def truncate(interval: str, column: str) -> sql.Composed:
    """The UTC bucket start of `column` (date_trunc in UTC, as time_bucket does)."""
    return sql.SQL("date_trunc({}, {}, 'UTC')").format(
        sql.Literal(interval), sql.Identifier(column)
    )


def refresh_select(rollup: Rollup, store: SketchStore) -> sql.Composed:
    """SELECT of one rollup's rows for [%(start)s, %(end)s) on the portable backend."""
    source = rollup.source
    time_column = "time" if source is None else "bucket"
    columns = [
        ("bucket", truncate(rollup.interval, time_column)),
        ("project_id", sql.SQL("project_id")),
    ]
    where = sql.SQL("{column} >= %(start)s AND {column} < %(end)s").format(
        column=sql.Identifier(time_column)
    )
    if source is None:
        columns += [(dim, RAW_DIMENSION[dim]) for dim in rollup.grain.dims]
        return raw_aggregate(columns, where, store)
    columns += [(dim, sql.Identifier(dim)) for dim in rollup.grain.dims]
    return rollup_aggregate(source.table, columns, where, store)


def refresh_statements(rollup: Rollup, store: SketchStore) -> list[sql.Composed]:
    """Recompute one rollup for [%(start)s, %(end)s): delete the range, insert it anew."""
    columns = ["bucket", "project_id", *rollup.grain.dims, *(m.name for m in MEASURES),
               SKETCH_COLUMN]  # fmt: skip
    return [
        sql.SQL("DELETE FROM {} WHERE bucket >= %(start)s AND bucket < %(end)s").format(
            sql.Identifier(rollup.table)
        ),
        sql.SQL("INSERT INTO {} ({}) {}").format(
            sql.Identifier(rollup.table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            refresh_select(rollup, store),
        ),
    ]


def hour_floor(moment: datetime) -> datetime:
    """Start of the UTC hour (buckets are UTC whatever the offset of `moment`)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_floor(moment: datetime) -> datetime:
    """Start of the UTC day."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def floor_to(interval: str, moment: datetime) -> datetime:
    return hour_floor(moment) if interval == HOUR else day_floor(moment)
