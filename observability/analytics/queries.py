"""KPI queries: rollups for closed buckets, raw rows for the rest, merged in one statement.

A window [start, end) is split into parts: whole days from the daily rollups, whole
hours from the hourly rollups, and raw rows for the partial hours at its edges and for
everything past the materialised watermark (so results include the last seconds). Each
part yields rows of the same shape; one aggregation over their UNION ALL merges the
measures and sketches (sketches.py); quantiles are read from the merged sketch in
Python.

The grain is the coarsest one that has every dimension the query filters or groups by.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from observability.analytics import backend, rollups, sketch, sketches
from observability.analytics.rollups import DAY, HOUR, MEASURES, Grain
from observability.analytics.sketches import SketchStore

MINUTE = "minute"
INTERVALS = {MINUTE: timedelta(minutes=1), HOUR: timedelta(hours=1), DAY: timedelta(days=1)}
QUANTILES = (0.5, 0.95, 0.99)
RAW = "raw"
# What endpoints can be ranked by; rates and percentiles rank only endpoints with enough
# hits (APM_TOP_MIN_HITS), counts rank all.
RANKINGS = ("hits", "errors", "error_rate", "p50", "p95", "p99", "apdex")
COUNT_RANKINGS = ("hits", "errors")
ENDPOINT_KEY = ("service", "endpoint", "method")


@dataclasses.dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


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

    def as_dict(self, seconds: float, percentiles: list | None = None) -> dict:
        """The documented KPI shape, with rates over `seconds` (and the p50, p95, p99
        if as_dicts() computed them already)."""
        hits = self.hits
        if percentiles is None:
            percentiles = _percentiles([self])[0]
        p50, p95, p99 = percentiles
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


def as_dicts(kpis: list[Kpi], seconds: list[float]) -> list[dict]:
    """Kpi.as_dict of many KPIs (a time series, a ranking), their percentiles read from
    all their sketches at once."""
    return [
        kpi.as_dict(span, percentiles)
        for kpi, span, percentiles in zip(kpis, seconds, _percentiles(kpis), strict=True)
    ]


def _percentiles(kpis: list[Kpi]) -> list[list[float | None]]:
    """(p50, p95, p99) of each KPI; None without requests."""
    measured = [n for n, kpi in enumerate(kpis) if kpi.sketch is not None and kpi.hits]
    found = dict(zip(measured, sketch.quantiles_of_many(
        [kpis[n].sketch for n in measured], QUANTILES,
        [kpis[n].latency_min for n in measured], [kpis[n].latency_max for n in measured],
    ) if measured else [], strict=True))  # fmt: skip
    return [found.get(n, [None] * len(QUANTILES)) for n in range(len(kpis))]


@dataclasses.dataclass(frozen=True)
class Part:
    source: str  # RAW, HOUR or DAY
    start: datetime
    end: datetime


def plan(
    start: datetime,
    end: datetime,
    coarsest_rollup: str | None,
    hourly_until: datetime,
    daily_until: datetime,
) -> list[Part]:
    """Cover [start, end) with daily, hourly and raw parts.

    `coarsest_rollup` is the coarsest rollup the caller may use (None: raw rows only,
    HOUR: hourly, DAY: daily and hourly). Rollups serve only buckets wholly inside the
    window and before their watermark.
    """
    if coarsest_rollup is None:
        return [Part(RAW, start, end)]
    parts: list[Part] = []
    rest = [(start, end)]
    if coarsest_rollup == DAY:
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


# A query returns its keys, then these merged measures, then errors and the sketch.
MEASURE_NAMES = [m.name for m in MEASURES]
EMPTY = Kpi()  # a bucket without requests


class KpiQuery:
    """KPIs of one project's requests in a window, in the API's shapes."""

    def __init__(
        self, project_id: int, window: Window, filters: Filters, connection: BaseDatabaseWrapper
    ):
        self.project_id, self.window, self.filters = project_id, window, filters
        self.connection = connection
        self._total_kpi: Kpi | None = None

    def totals(self) -> dict:
        return self._total().as_dict(self.window.seconds)

    def distribution(self) -> list[tuple[float, float, int]]:
        """The latency distribution of the window from its merged sketch: (low_ms, high_ms,
        count) of each non-empty sketch bucket, fastest first. Shares totals()' query."""
        counts = self._total().sketch
        if counts is None:
            return []
        return [
            (*sketch.bucket_bounds(index + 1), int(count))
            for index, count in enumerate(counts)
            if count > 0
        ]

    def timeseries(self, interval: str) -> list[dict]:
        """One point per bucket, zero-filled; edge buckets count only their part inside
        the window (for rps)."""
        return self._points({key[0]: kpi for key, kpi in self._run((), interval)}, interval)

    def traffic_by(self, dimension: str, interval: str) -> dict[object, list[dict]]:
        """Requests per bucket ({bucket, hits, errors, rps}, zero-filled) of each value of
        `dimension` seen in the window (status class, service, ...): one query that merges
        no latency sketches, cheaper than a timeseries() per value."""
        found: dict[object, dict] = {}
        for (bucket, value), kpi in self._run((dimension,), interval, sketch=False):
            found.setdefault(value, {})[bucket] = kpi
        return {
            value: [
                {"bucket": bucket, "hits": kpi.hits, "errors": kpi.errors,
                 "rps": kpi.hits / seconds if seconds > 0 else 0.0}
                for bucket, seconds in self._buckets(interval)
                for kpi in [kpis.get(bucket, EMPTY)]
            ]
            for value, kpis in found.items()
        }  # fmt: skip

    def top_endpoints(self, by: str, limit: int, min_hits: int) -> list[dict]:
        """Endpoints ranked by `by`: highest first, Apdex lowest first; ties by hits."""
        rows = self._run(ENDPOINT_KEY, None)
        if by not in COUNT_RANKINGS:
            rows = [row for row in rows if row[1].hits >= min_hits]
        kpis = as_dicts([kpi for _, kpi in rows], [self.window.seconds] * len(rows))
        ranked = [
            {**dict(zip(ENDPOINT_KEY, key, strict=True)), **kpi}
            for (key, _), kpi in zip(rows, kpis, strict=True)
        ]
        ranked.sort(key=lambda row: _rank_key(by, row))
        return ranked[:limit]

    def per_group(
        self, group: tuple[str, ...], interval: str | None, windows: list[Window] | None = None
    ) -> list[tuple[tuple, Kpi]]:
        """The merged Kpi (sketch included) of each `group` value, per `interval` bucket
        (its start first in the key), over the window or over several `windows` read in
        one statement (the anomaly baseline: one hour of the week in each of four weeks)."""
        return self._run(group, interval, windows=windows)

    def services(self) -> list[dict]:
        """One row per service seen in the window, busiest first."""
        rows = sorted(self._run(("service",), None), key=lambda row: -row[1].hits)
        kpis = as_dicts([kpi for _, kpi in rows], [self.window.seconds] * len(rows))
        return [{"service": key[0], **kpi} for (key, _), kpi in zip(rows, kpis, strict=True)]

    # --- internals -------------------------------------------------------------------

    def _total(self) -> Kpi:
        if self._total_kpi is None:
            rows = self._run(group=(), interval=None)
            self._total_kpi = rows[0][1] if rows else Kpi()
        return self._total_kpi

    def _buckets(self, interval: str) -> Iterator[tuple[datetime, float]]:
        """Each bucket of the window and the seconds of it inside the window (edge
        buckets count only their part, for rps)."""
        step, start, end = INTERVALS[interval], self.window.start, self.window.end
        bucket = _floor(start, interval)
        while bucket < end:
            yield bucket, (min(bucket + step, end) - max(bucket, start)).total_seconds()
            bucket += step

    def _points(self, found: dict[datetime, Kpi], interval: str) -> list[dict]:
        buckets = list(self._buckets(interval))
        kpis = as_dicts([found.get(bucket, EMPTY) for bucket, _ in buckets],
                        [seconds for _, seconds in buckets])  # fmt: skip
        return [{"bucket": bucket, **kpi} for (bucket, _), kpi in zip(buckets, kpis, strict=True)]

    def _run(
        self,
        group: tuple[str, ...],
        interval: str | None,
        sketch: bool = True,
        windows: list[Window] | None = None,
    ) -> list[tuple[tuple, Kpi]]:
        grain = grain_for(self.filters.dimensions() | set(group))
        coarsest = {None: DAY, DAY: DAY, HOUR: HOUR, MINUTE: None}[interval]
        hourly_until, daily_until = backend.of(self.connection).materialised_until(self.connection)
        parts = [
            part
            for window in windows or [self.window]
            for part in plan(window.start, window.end, coarsest, hourly_until, daily_until)
        ]
        store = sketches.of(self.connection)
        query, params = self._compose(parts, grain, group, interval, store, sketch)
        self.connection.ensure_connection()
        with (
            self.connection.wrap_database_errors,
            psycopg.Cursor(self.connection.connection) as cursor,
        ):
            # Binary results: merged sketches arrive as arrays, not text to parse.
            cursor.execute(query, params, binary=True)
            key_count = len(group) + (1 if interval else 0)
            return [_row(row, key_count, store, sketch) for row in cursor.fetchall()]

    def _compose(self, parts, grain: Grain, group, interval, store: SketchStore, sketch: bool):
        params: dict = {"project": self.project_id, **self._filter_params()}
        selects = []
        for n, part in enumerate(parts):
            params[f"start{n}"], params[f"end{n}"] = part.start, part.end
            selects.append(self._part_select(n, part, grain, group, interval, store))
        keys = [sql.Identifier(name) for name in (["ts"] if interval else []) + list(group)]
        measures = [
            rollups.measure_columns("merge"),
            sql.SQL("(sum(hits) FILTER (WHERE status_class = 5))::bigint AS errors"),
            *([sql.SQL(store.merge_for_python)] if sketch else []),
        ]
        query = sql.SQL("SELECT {columns} FROM ({parts}) AS parts {group_by}").format(
            columns=sql.SQL(", ").join([*keys, *measures]),
            parts=sql.SQL(" UNION ALL ").join(selects),
            group_by=sql.SQL("GROUP BY {}").format(sql.SQL(", ").join(keys))
            if keys
            else sql.SQL(""),
        )
        return query, params

    def _part_select(
        self, n: int, part: Part, grain: Grain, group, interval, store: SketchStore
    ) -> sql.Composed:
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
            return sql.SQL("({})").format(rollups.raw_aggregate(columns, where, store))
        table = rollups.Rollup(grain, part.source).table
        ts = [sql.SQL("{} AS ts").format(rollups.truncate(interval, "bucket"))] if interval else []
        where = sql.SQL(" AND ").join(
            [window.format(column=sql.Identifier("bucket"), **bounds), *self._filter_sql(raw=False)]
        )
        stored = [*MEASURE_NAMES, rollups.SKETCH_COLUMN]
        return sql.SQL("(SELECT {columns} FROM {table} WHERE {where})").format(
            columns=sql.SQL(", ").join([*ts, *map(sql.Identifier, dims + stored)]),
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


def _row(row, key_count: int, store: SketchStore, sketch: bool) -> tuple[tuple, Kpi]:
    values = [*row[key_count:], *([] if sketch else [None])]
    key, (*measured, errors, merged_sketch) = tuple(row[:key_count]), values
    # NULL measures (no rows) keep Kpi's defaults.
    values = {name: v for name, v in zip(MEASURE_NAMES, measured, strict=True) if v is not None}
    sketch_counts = store.counts(merged_sketch) if merged_sketch else None
    return key, Kpi(**values, errors=errors or 0, sketch=sketch_counts)


def _rank_key(by: str, kpi: dict) -> tuple:
    if by in ("p50", "p95", "p99"):
        value = -(kpi["latency_ms"][by] or 0.0)
    elif by == "apdex":
        value = kpi["apdex"] if kpi["apdex"] is not None else 1.0
    else:
        value = -kpi[by]
    return value, -kpi["hits"]


def _floor(moment: datetime, interval: str) -> datetime:
    if interval == MINUTE:
        return moment.astimezone(UTC).replace(second=0, microsecond=0)
    return rollups.floor_to(interval, moment)
