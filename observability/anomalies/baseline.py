"""The seasonal baseline of an endpoint: the same hour of the week over the last 4 weeks.

For a UTC hour H, the baseline reads the hourly rollups of H - 1 week, …, H - 4 weeks and
keeps, per endpoint (service, endpoint: methods, status classes and environments merged),
one value per week of each signal: requests per minute, error rate (5xx / requests) and
p95 latency (from the week's merged sketch). A signal's baseline is the median of its
weekly values, with the MAD (median absolute deviation) as its scale: both ignore one
odd week (an incident, a holiday) where a mean and a standard deviation would not.

Traffic counts every week (a week without requests is a 0). Latency and error rate
count only weeks with at least BASELINE_MIN_HITS requests in the hour, and need
BASELINE_MIN_WEEKS of them: a p95 of a handful of requests is not a baseline.

Cost: one statement for every endpoint of the project and every hour asked for
(KpiQuery.per_group over one-hour windows). It reads the endpoint grain's hourly rows
of those hours (index on project_id, bucket): per endpoint about (methods x status
classes x environments) rows per week, so 4 hours x 10,000 endpoints x ~2 rows is
~80,000 rows merged into 40,000 sketches. An hour not materialised yet (past the
hourly watermark) is read from raw rows instead, as every KPI query does.
"""

from __future__ import annotations

import dataclasses
import statistics
from datetime import datetime, timedelta

from django.db.backends.base.base import BaseDatabaseWrapper

from observability.analytics import sketch
from observability.analytics.queries import Filters, Kpi, KpiQuery, Window
from observability.analytics.rollups import HOUR

WEEKS = 4
WEEK = timedelta(days=7)
BASELINE_MIN_HITS = 100
BASELINE_MIN_WEEKS = 3
# Sketches read per batch when computing p95s: a dense sketch is 1,024 float64 (8 KiB).
P95_BATCH = 2000

TRAFFIC = "traffic_drop"
ERROR_RATE = "error_rate"
LATENCY = "latency_p95"
SIGNALS = (LATENCY, ERROR_RATE, TRAFFIC)

Endpoint = tuple[str, str]  # (service, endpoint)


@dataclasses.dataclass(frozen=True)
class Baseline:
    median: float
    mad: float
    weeks: tuple[float, ...]  # the weekly values, one week ago first (missing weeks left out)

    @classmethod
    def of(cls, values: list[float]) -> Baseline:
        median = statistics.median(values)
        return cls(median, statistics.median(abs(v - median) for v in values), tuple(values))


def weekly_windows(hour: datetime) -> list[Window]:
    """The same hour of the week in each of the last WEEKS weeks, one week ago first."""
    return [
        Window(hour - week * WEEK, hour - week * WEEK + timedelta(hours=1))
        for week in range(1, WEEKS + 1)
    ]


def seasonal(
    project_id: int, hours: list[datetime], filters: Filters, connection: BaseDatabaseWrapper
) -> dict[tuple[datetime, str, str], dict[str, Baseline]]:
    """(hour, service, endpoint) -> {signal: Baseline} for the signals with enough data,
    for every endpoint with requests in one of the weeks of the `hours` (UTC hour starts)."""
    windows = [window for hour in hours for window in weekly_windows(hour)]
    query = KpiQuery(project_id, windows[0], filters, connection)
    rows = query.per_group(("service", "endpoint"), HOUR, windows=windows)
    p95s = p95_of([kpi for _, kpi in rows])
    weekly: dict[tuple[datetime, str, str], dict[int, tuple[Kpi, float | None]]] = {}
    for ((bucket, service, endpoint), kpi), p95 in zip(rows, p95s, strict=True):
        for hour in hours:
            week, rest = divmod(hour - bucket, WEEK)
            if not rest and 1 <= week <= WEEKS:
                weekly.setdefault((hour, service, endpoint), {})[week] = (kpi, p95)
    return {key: baselines(weeks) for key, weeks in weekly.items()}


def baselines(weeks: dict[int, tuple[Kpi, float | None]]) -> dict[str, Baseline]:
    """Each signal's baseline from the weekly KPIs of one hour of one endpoint."""
    found = {TRAFFIC: Baseline.of([
        weeks[week][0].hits / 60 if week in weeks else 0.0 for week in range(1, WEEKS + 1)
    ])}  # fmt: skip
    busy = [weeks[week] for week in sorted(weeks) if weeks[week][0].hits >= BASELINE_MIN_HITS]
    if len(busy) >= BASELINE_MIN_WEEKS:
        found[ERROR_RATE] = Baseline.of([kpi.errors / kpi.hits for kpi, _ in busy])
        found[LATENCY] = Baseline.of([p95 for _, p95 in busy])
    return found


def p95_of(kpis: list[Kpi]) -> list[float | None]:
    """The p95 latency of each KPI's sketch (None without requests), in batches."""
    found: list[float | None] = [None] * len(kpis)
    measured = [n for n, kpi in enumerate(kpis) if kpi.hits and kpi.sketch is not None]
    for first in range(0, len(measured), P95_BATCH):
        batch = measured[first : first + P95_BATCH]
        values = sketch.quantiles_of_many(
            [kpis[n].sketch for n in batch], (0.95,),
            [kpis[n].latency_min for n in batch], [kpis[n].latency_max for n in batch],
        )  # fmt: skip
        for n, (value,) in zip(batch, values, strict=True):
            found[n] = value
    return found
