"""Good and total requests of SLOs, over windows ending at one minute or per hour.

One statement answers every SLO of a project and every window:

1. `source`: rollup-shaped rows (hits, errors by status class, latency sketch) of the
   SLOs' services, from the daily and hourly endpoint rollups and from raw requests for
   what rollups cannot serve: the partial hour at a window's start and everything past
   the hourly watermark (queries.plan decides, as for the KPIs). Raw rows are first
   aggregated per *segment* (the time ranges between two consecutive part boundaries,
   inside which every row belongs to the same windows) and endpoint.
2. `per_endpoint`: per (service, endpoint, environment), each window's hits, 5xx and
   merged sketch, each counting only the rows of its own plan (`FILTER`): a range read
   raw for the 1 h window and from an hourly rollup for the 2 h window counts once in each.
3. per SLO: the sums over its endpoints; good is hits - 5xx (availability) or the
   sketch's count at or below the threshold's bucket (latency; sketches.count_at_most).

The raw tail (a few hours of a project's requests, in segments) and ~600 endpoint rows
per project and window are what an evaluation minute costs; docs/ALERTING.md has the
measured numbers.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg import sql

from observability.analytics import backend, rollups, sketches
from observability.analytics.queries import RAW, Part, plan
from observability.analytics.rollups import DAY, ENDPOINT, HOUR, Rollup

SOURCE_TAGS = {RAW: "r", HOUR: "h", DAY: "d"}


@dataclasses.dataclass(frozen=True)
class Counts:
    total: int = 0
    good: int = 0

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def sli(self) -> float | None:
        return self.good / self.total if self.total else None


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    label: str
    length: timedelta
    coarsest: str  # HOUR or DAY: the coarsest rollup the window may read


def window_counts(
    connection: BaseDatabaseWrapper,
    project_id: int,
    windows: list[WindowSpec],
    at: datetime,
    slo_ids: list[int] | None = None,
) -> dict[int, dict[str, Counts]]:
    """SLO id -> window label -> counts, over [at - length, at) (all the project's SLOs,
    or those of `slo_ids`). SLOs without requests in a window get zero counts."""
    hourly_until, daily_until = backend.of(connection).materialised_until(connection)
    plans = {w.label: plan(at - w.length, at, w.coarsest, hourly_until, daily_until)
             for w in windows}  # fmt: skip
    params: dict = {"project": project_id, "slo_ids": slo_ids}
    membership = {
        label: _membership(parts, f"w{n}", params) for n, (label, parts) in enumerate(plans.items())
    }
    all_parts = [part for parts in plans.values() for part in parts]
    store = sketches.of(connection)
    measures = []
    for n, label in enumerate(membership):
        inside = membership[label]
        measures += [
            sql.SQL("sum(hits) FILTER (WHERE {}) AS {}").format(inside, sql.Identifier(f"t{n}")),
            sql.SQL("sum(hits) FILTER (WHERE status_class = 5 AND ({})) AS {}").format(
                inside, sql.Identifier(f"e{n}")
            ),
            sql.SQL("{} AS {}").format(
                sql.SQL(store.merge_filtered).format(inside), sql.Identifier(f"s{n}")
            ),
        ]
    rows = _run(connection, all_parts, [], measures, len(windows), params, store)
    labels = list(membership)
    return {
        slo_id: {
            label: Counts(int(values[2 * n] or 0), int(values[2 * n + 1] or 0))
            for n, label in enumerate(labels)
        }
        for slo_id, *values in rows
    }


def hourly_counts(
    connection: BaseDatabaseWrapper, project_id: int, slo_id: int, start: datetime, end: datetime
) -> dict[datetime, Counts]:
    """Counts of one SLO per UTC hour of [start, end) (hours without requests absent)."""
    hourly_until, daily_until = backend.of(connection).materialised_until(connection)
    parts = plan(start, end, HOUR, hourly_until, daily_until)
    params: dict = {"project": project_id, "slo_ids": [slo_id]}
    store = sketches.of(connection)
    measures = [
        sql.SQL("sum(hits) AS t0"),
        sql.SQL("sum(hits) FILTER (WHERE status_class = 5) AS e0"),
        sql.SQL("{} AS s0").format(sql.SQL(store.merge_filtered).format(sql.SQL("true"))),
    ]
    rows = _run(connection, parts, ["hour"], measures, 1, params, store)
    return {hour: Counts(int(total or 0), int(good or 0)) for _, hour, total, good in rows}


# --- the statement -----------------------------------------------------------------------

STATEMENT = """
WITH slo AS (
    SELECT id, service, endpoints, environment, objective,
           -- The glob as a LIKE pattern: its * becomes LIKE's wildcard, LIKE's own escaped.
           replace(replace(replace(replace(endpoint_pattern, '\\', '\\\\'), '%%', '\\%%'),
                   '_', '\\_'), '*', '%%') AS endpoint_like,
           {mask} AS mask
    FROM apm_slo
    WHERE project_id = %(project)s AND (%(slo_ids)s::bigint[] IS NULL OR id = ANY(%(slo_ids)s))
), source AS ({source}
), per_endpoint AS (
    SELECT {keys}service, endpoint, environment, {measures}
    FROM source
    GROUP BY {keys}service, endpoint, environment
), per_pair AS MATERIALIZED (
    -- Each (SLO, endpoint) pair's counts as numbers: what is grouped next carries no
    -- sketches (sorting them spilled to disk: make bench-alerts).
    SELECT slo.id, {keys}{per_pair}
    FROM slo JOIN per_endpoint AS e ON e.service = slo.service
        AND (cardinality(slo.endpoints) = 0 OR e.endpoint = ANY(slo.endpoints))
        AND (slo.endpoint_like = '' OR e.endpoint LIKE slo.endpoint_like)
        AND (slo.environment = '' OR e.environment = slo.environment)
)
SELECT id, {keys}{sums}
FROM per_pair
GROUP BY id{group_keys}
ORDER BY id{group_keys}
"""


def _run(connection, parts, keys, measures, windows: int, params, store) -> list[tuple]:
    source = _source(parts, params, store, by_hour="hour" in keys)
    key_sql = sql.SQL("").join(sql.SQL("{}, ").format(sql.Identifier(k)) for k in keys)
    query = sql.SQL(STATEMENT).format(
        mask=sql.SQL(store.threshold_mask),
        source=source,
        keys=key_sql,
        measures=sql.SQL(", ").join(measures),
        per_pair=sql.SQL(", ").join(_per_pair(n, store) for n in range(windows)),
        sums=_sums(windows),
        group_keys=sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(k)) for k in keys),
    )
    connection.ensure_connection()
    # Through Django's cursor (its execute wrappers see it: the benchmark times them).
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(connection.connection), params)
        return cursor.fetchall()


def _per_pair(n: int, store) -> sql.Composed:
    """Window n's total and good requests of an (SLO, endpoint) pair."""
    total, errors, merged = (sql.Identifier(f"{c}{n}") for c in "tes")
    good_latency = sql.SQL(store.count_at_most).format(sketch=merged, mask=sql.SQL("slo.mask"))
    return sql.SQL(
        "coalesce({total}, 0) AS {total}, CASE WHEN slo.objective = 'latency' THEN "
        "coalesce({good}, 0) ELSE coalesce({total}, 0) - coalesce({errors}, 0) END AS {good_name}"
    ).format(total=total, errors=errors, good=good_latency, good_name=sql.Identifier(f"g{n}"))


def _sums(count: int) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("sum({})::bigint, sum({})::bigint").format(
            sql.Identifier(f"t{n}"), sql.Identifier(f"g{n}")
        )
        for n in range(count)
    )


def _membership(parts: list[Part], prefix: str, params: dict) -> sql.Composable:
    """Whether a source row (its tag `src`, its start `t`) lies in one of `parts`."""
    clauses = []
    for n, part in enumerate(parts):
        start, end = f"{prefix}_{n}_start", f"{prefix}_{n}_end"
        params[start], params[end] = part.start, part.end
        clauses.append(
            sql.SQL("(src = {tag} AND t >= {start} AND t < {end})").format(
                tag=sql.Literal(SOURCE_TAGS[part.source]),
                start=sql.Placeholder(start),
                end=sql.Placeholder(end),
            )
        )
    return sql.SQL("({})").format(sql.SQL(" OR ").join(clauses)) if clauses else sql.SQL("false")


def _source(parts: list[Part], params: dict, store, by_hour: bool) -> sql.Composed:
    """Rollup-shaped rows (src, t[, hour], service, endpoint, environment, status_class,
    hits, ..., sketch) of the SLOs' services covering `parts`."""
    selects = []
    raw = _merge([(p.start, p.end) for p in parts if p.source == RAW])
    services = sql.SQL("service IN (SELECT service FROM slo)")
    if raw:
        # Segment boundaries: inside a segment every raw row is in the same parts.
        params["breaks"] = sorted({moment for p in parts if p.source == RAW
                                   for moment in (p.start, p.end)})  # fmt: skip
        segment = sql.SQL(
            "(%(breaks)s::timestamptz[])[width_bucket(time, %(breaks)s::timestamptz[])]"
        )
        columns = [("t", segment)]
        if by_hour:
            columns.append(("hour", rollups.truncate(HOUR, "time")))
        columns += [(dim, rollups.RAW_DIMENSION[dim])
                    for dim in ("service", "endpoint", "environment", "status_class")]  # fmt: skip
        ranges = []
        for n, (start, end) in enumerate(raw):
            params[f"raw{n}_start"], params[f"raw{n}_end"] = start, end
            ranges.append(sql.SQL("(time >= {} AND time < {})").format(
                sql.Placeholder(f"raw{n}_start"), sql.Placeholder(f"raw{n}_end")))  # fmt: skip
        where = sql.SQL("project_id = %(project)s AND {} AND ({})").format(
            services, sql.SQL(" OR ").join(ranges)
        )
        aggregate = rollups.raw_aggregate(columns, where, store)
        selects.append(sql.SQL("SELECT 'r' AS src, * FROM ({}) AS raw_rows").format(aggregate))
    for interval in (HOUR, DAY):
        ranges = _merge([(p.start, p.end) for p in parts if p.source == interval])
        for n, (start, end) in enumerate(ranges):
            names = f"{interval}{n}_start", f"{interval}{n}_end"
            params[names[0]], params[names[1]] = start, end
            selects.append(
                sql.SQL(
                    "SELECT {tag} AS src, bucket AS t, {hour}service, endpoint, environment, "
                    "status_class, hits, sketch FROM {table} WHERE project_id = %(project)s "
                    "AND {services} AND bucket >= {start} AND bucket < {end}"
                ).format(
                    tag=sql.Literal(SOURCE_TAGS[interval]),
                    hour=sql.SQL("bucket AS hour, " if by_hour else ""),
                    table=sql.Identifier(Rollup(ENDPOINT, interval).table),
                    services=services,
                    start=sql.Placeholder(names[0]),
                    end=sql.Placeholder(names[1]),
                )
            )
    # Raw aggregates carry every measure; the rollup rows only what SLOs read.
    keys = sql.SQL("src, t, hour" if by_hour else "src, t")
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}, service, endpoint, environment, status_class, hits, sketch "
                "FROM ({}) AS part").format(keys, select)
        for select in selects
    )  # fmt: skip


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The union of half-open ranges, as disjoint ranges in order."""
    merged: list[list[datetime]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]
