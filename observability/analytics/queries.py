"""KPI queries: rollups for closed buckets, raw rows for the rest, merged in one statement.

A window [start, end) is split into parts: whole days from the daily rollups, whole
hours from the hourly rollups, and raw rows for the partial hours at its edges and for
everything past the materialised watermark (so results include the last seconds). Each
part yields rows of the same shape; one aggregation over their UNION ALL adds counts
and sketches (pgvector, in C); quantiles are read from the merged sketch in Python.

The grain is the coarsest one that has every dimension the query filters or groups by.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from observability.analytics import backend, maintenance, rollups, sketch
from observability.analytics.rollups import DAY, HOUR, Grain

MINUTE = "minute"
INTERVALS = {MINUTE: timedelta(minutes=1), HOUR: timedelta(hours=1), DAY: timedelta(days=1)}
QUANTILES = (0.5, 0.95, 0.99)
RAW = "raw"
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
FAR_PAST = datetime(1, 1, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Filters:
    service: str | None = None
    endpoint: str | None = None
    method: str | None = None
    status_class: int | None = None
    environment: str | None = None

    def dimensions(self) -> set[str]:
        return {name for name, value in dataclasses.asdict(self).items() if value is not None}


@dataclasses.dataclass
class Kpi:
    hits: int = 0
    errors: int = 0
    apdex_satisfied: int = 0
    apdex_tolerating: int = 0
    latency_sum: float = 0.0
    latency_min: float | None = None
    latency_max: float | None = None
    sketch: np.ndarray | None = None

    def as_dict(self, seconds: float) -> dict:
        hits = self.hits
        p50, p95, p99 = (
            sketch.quantiles(self.sketch, QUANTILES, self.latency_min, self.latency_max)
            if self.sketch is not None and hits
            else (None, None, None)
        )
        return {
            "hits": hits,
            "errors": self.errors,
            "error_rate": self.errors / hits if hits else 0.0,
            "rps": hits / seconds if seconds > 0 else 0.0,
            "apdex": (self.apdex_satisfied + self.apdex_tolerating / 2) / hits if hits else None,
            "latency_ms": {
                "avg": self.latency_sum / hits if hits else None,
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "max": self.latency_max if hits else None,
            },
        }


@dataclasses.dataclass(frozen=True)
class Part:
    source: str  # RAW, HOUR or DAY
    start: datetime
    end: datetime


def plan(
    start: datetime,
    end: datetime,
    finest_rollup: str | None,
    hourly_until: datetime,
    daily_until: datetime,
) -> list[Part]:
    """Cover [start, end) with daily, hourly and raw parts.

    `finest_rollup` is the coarsest rollup the caller can use (None: raw only, DAY: all);
    rollups are used only for buckets wholly inside the window and before their watermark.
    """
    if finest_rollup is None:
        return [Part(RAW, start, end)]
    parts: list[Part] = []
    rest = [(start, end)]
    if finest_rollup == DAY:
        d0 = _ceil(start, DAY)
        d1 = min(rollups.day_floor(end), daily_until)
        if d0 < d1:
            parts.append(Part(DAY, d0, d1))
            rest = [(start, d0), (d1, end)]
    for a, b in rest:
        h0 = _ceil(a, HOUR)
        h1 = min(rollups.hour_floor(b), hourly_until)
        if h0 < h1:
            parts += [Part(RAW, a, h0), Part(HOUR, h0, h1), Part(RAW, h1, b)]
        else:
            parts.append(Part(RAW, a, b))
    return [part for part in parts if part.start < part.end]


def _ceil(moment: datetime, interval: str) -> datetime:
    floor = rollups.floor_to(interval, moment)
    return floor if floor == moment else floor + rollups.STEP[interval]


def grain_for(dimensions: set[str]) -> Grain:
    for grain in rollups.GRAINS_COARSEST_FIRST:
        if dimensions <= set(grain.dims):
            return grain
    raise ValueError(f"no rollup grain has dimensions {sorted(dimensions)}")


class KpiQuery:
    """KPIs of one project over a window, optionally grouped and/or per time bucket."""

    def __init__(
        self,
        project_id: int,
        start: datetime,
        end: datetime,
        filters: Filters,
        connection: BaseDatabaseWrapper = default_connection,
    ):
        self.project_id, self.start, self.end, self.filters = project_id, start, end, filters
        self.connection = connection

    def totals(self) -> Kpi:
        rows = self._run(group=(), interval=None, with_sketch=True)
        return rows[0][1] if rows else Kpi()

    def grouped(self, group: tuple[str, ...], with_sketch: bool) -> list[tuple[tuple, Kpi]]:
        return [(key, kpi) for key, kpi in self._run(group, None, with_sketch)]

    def timeseries(self, interval: str) -> list[tuple[datetime, Kpi]]:
        found = {key[0]: kpi for key, kpi in self._run((), interval, with_sketch=True)}
        step = INTERVALS[interval]
        bucket = _floor(self.start, interval)
        series = []
        while bucket < self.end:
            series.append((bucket, found.get(bucket, Kpi())))
            bucket += step
        return series

    # --- internals -------------------------------------------------------------------

    def _run(self, group: tuple[str, ...], interval: str | None, with_sketch: bool):
        grain = grain_for(self.filters.dimensions() | set(group))
        finest = {None: DAY, DAY: DAY, HOUR: HOUR, MINUTE: None}[interval]
        hourly_until, daily_until = self._materialised_until()
        parts = plan(self.start, self.end, finest, hourly_until, daily_until)
        query, params = self._compose(parts, grain, group, interval, with_sketch)
        self.connection.ensure_connection()
        with (
            self.connection.wrap_database_errors,
            psycopg.Cursor(self.connection.connection) as cursor,
        ):
            # Binary results: the merged sketches arrive as float4 arrays, not text.
            cursor.execute(query, params, binary=True)
            return [self._row(row, len(group) + (1 if interval else 0), with_sketch)
                    for row in cursor.fetchall()]  # fmt: skip

    def _materialised_until(self) -> tuple[datetime, datetime]:
        if backend.current(self.connection) == backend.TIMESCALE:
            # Real-time continuous aggregates include the not-yet-materialised tail.
            return FAR_FUTURE, rollups.day_floor(datetime.now(UTC))
        marks = maintenance.watermarks(self.connection)
        return marks.get(HOUR, FAR_PAST), marks.get(DAY, FAR_PAST)

    def _compose(self, parts, grain: Grain, group, interval, with_sketch):
        params: dict = {"project": self.project_id, **self._filter_params()}
        selects = []
        for n, part in enumerate(parts):
            params[f"start{n}"], params[f"end{n}"] = part.start, part.end
            selects.append(self._part_select(n, part, grain, group, interval))
        keys = [sql.Identifier(name) for name in (["ts"] if interval else []) + list(group)]
        measures = [
            sql.SQL("sum(hits)::bigint"),
            sql.SQL("(sum(hits) FILTER (WHERE status_class = 5))::bigint"),
            sql.SQL("sum(apdex_satisfied)::bigint"),
            sql.SQL("sum(apdex_tolerating)::bigint"),
            sql.SQL("sum(latency_sum)"),
            sql.SQL("min(latency_min)"),
            sql.SQL("max(latency_max)"),
        ]
        if with_sketch:
            # The merged sketch in pgvector's binary form (a 4-byte header, then
            # big-endian float4 counts): read by numpy without parsing.
            measures.append(sql.SQL("vector_send(sum(sketch::vector))"))
        query = sql.SQL("SELECT {columns} FROM ({parts}) AS parts {group_by}").format(
            columns=sql.SQL(", ").join([*keys, *measures]),
            parts=sql.SQL(" UNION ALL ").join(selects),
            group_by=sql.SQL("GROUP BY {}").format(sql.SQL(", ").join(keys))
            if keys
            else sql.SQL(""),
        )
        return query, params

    def _part_select(self, n: int, part: Part, grain: Grain, group, interval) -> sql.Composed:
        dims = list(dict.fromkeys([*group, "status_class"]))
        window = sql.SQL("project_id = %(project)s AND {column} >= {start} AND {column} < {end}")
        bounds = {"start": sql.Placeholder(f"start{n}"), "end": sql.Placeholder(f"end{n}")}
        if part.source == RAW:
            columns = [("ts", rollups.truncate(interval, "time"))] if interval else []
            columns += [(dim, rollups.RAW_DIMENSION[dim]) for dim in dims]
            where = sql.SQL(" AND ").join(
                [
                    window.format(column=sql.Identifier("time"), **bounds),
                    *self._filter_sql(raw=True),
                ]
            )
            return sql.SQL("({})").format(rollups.raw_aggregate(columns, where))
        table = rollups.Rollup(grain, part.source).table
        ts = [sql.SQL("{} AS ts").format(rollups.truncate(interval, "bucket"))] if interval else []
        where = sql.SQL(" AND ").join(
            [window.format(column=sql.Identifier("bucket"), **bounds), *self._filter_sql(raw=False)]
        )
        return sql.SQL("(SELECT {columns} FROM {table} WHERE {where})").format(
            columns=sql.SQL(", ").join(
                [*ts, *map(sql.Identifier, dims), *map(sql.Identifier, rollups.MEASURES)]
            ),
            table=sql.Identifier(table),
            where=where,
        )

    def _filter_params(self) -> dict:
        return {f"f_{name}": value for name, value in dataclasses.asdict(self.filters).items()
                if value is not None}  # fmt: skip

    def _filter_sql(self, raw: bool) -> list[sql.Composed]:
        clauses = []
        for name in sorted(self.filters.dimensions()):
            column = rollups.RAW_DIMENSION[name] if raw else sql.Identifier(name)
            clauses.append(sql.SQL("{} = {}").format(column, sql.Placeholder(f"f_{name}")))
        return clauses

    @staticmethod
    def _row(row, key_count: int, with_sketch: bool) -> tuple[tuple, Kpi]:
        key, values = tuple(row[:key_count]), row[key_count:]
        kpi = Kpi(
            hits=values[0] or 0,
            errors=values[1] or 0,
            apdex_satisfied=values[2] or 0,
            apdex_tolerating=values[3] or 0,
            latency_sum=values[4] or 0.0,
            latency_min=values[5],
            latency_max=values[6],
            sketch=_counts(values[7]) if with_sketch and values[7] else None,
        )
        return key, kpi


def _counts(vector_binary: bytes) -> np.ndarray:
    return np.frombuffer(vector_binary, dtype=">f4", offset=4).astype(np.float64)


def _floor(moment: datetime, interval: str) -> datetime:
    if interval == MINUTE:
        return moment.astimezone(UTC).replace(second=0, microsecond=0)
    return rollups.floor_to(interval, moment)
