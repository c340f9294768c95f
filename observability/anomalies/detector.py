"""Anomalies of an endpoint against its seasonal baseline, evaluated statelessly.

Per endpoint (service, endpoint) with enough traffic, three signals:

- `latency_p95`: the p95 latency rises above the baseline's p95;
- `error_rate`: the share of 5xx answers rises above the baseline's;
- `traffic_drop`: requests per minute fall far below the baseline's.

Each call evaluates the last K closed minutes before `at`. A minute's value is read from
the raw requests of the SMOOTHING_MINUTES minutes ending with it, pooled: the p95 of all
their requests (their sketches merged), errors / requests, requests / minutes. Pooling
is the smoothing, chosen over a median of per-minute values or an EWMA because
percentiles must not be averaged (a merged sketch gives the exact p95 of the pooled
requests, and a minute weighs by its requests), and because it reacts at once: a step
shows in the first minute's pool, where a median of 3 needs two minutes of it. A minute
*breaches* when its value is beyond the threshold with statistical confidence (below),
and a finding *fires* when all K evaluated minutes breach. Nothing is stored: the K
minutes are evaluated again at each call (no migration, any node can evaluate).

Thresholds, from the baseline's median m and scale s = 1.4826 · MAD (a normal
distribution's standard deviation):

    latency_p95   max(m + Z·s, LATENCY_RATIO · m)         (ms)
    error_rate    max(m + Z·s, m + ERROR_RATE_INCREASE)   (share of requests)
    traffic_drop  min(m - Z·s, TRAFFIC_DROP_RATIO · m)    (requests per minute)

A few requests make a noisy p95 or error rate, so a minute breaches only when its
sample says so at EVIDENCE_Z standard errors: for latency, when the share of the pooled
requests slower than the threshold is significantly above 5 % (the Wilson lower bound
of that share, which is the p95's lower confidence bound being above the threshold);
for errors, when the Wilson lower bound of the error rate is above the threshold; for
traffic, when the Poisson upper bound of the pooled count is below the threshold.
Latency and error-rate minutes need MIN_REQUESTS pooled requests to breach at all; the
traffic drop needs a baseline of MIN_BASELINE_PER_MINUTE requests per minute.

Cost per call: two statements. The baseline (baseline.py): the hourly rollups of the
evaluated minutes' hour(s) in the last 4 weeks. The raw tail: the project's requests of
the last K + SMOOTHING_MINUTES - 1 = 4 minutes (api_request's (project_id, time) index),
aggregated per minute and endpoint (KpiQuery.per_group). Both grow with the number of
endpoints, not with history; `make bench-anomalies` measures them on 10,000 endpoints.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import numpy as np
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper

from observability.analytics import sketch
from observability.analytics.queries import MINUTE, Filters, Kpi, KpiQuery, Window
from observability.analytics.rollups import hour_floor
from observability.anomalies.baseline import (
    ERROR_RATE,
    LATENCY,
    SIGNALS,
    TRAFFIC,
    Baseline,
    p95_of,
    seasonal,
)

K = 2  # consecutive breaching minutes before a finding fires
SMOOTHING_MINUTES = 3
Z = 3.0  # distance from the baseline median, in MAD-derived standard deviations
MAD_TO_SIGMA = 1.4826
EVIDENCE_Z = 3.0  # confidence of a minute's sample
LATENCY_RATIO = 1.5
ERROR_RATE_INCREASE = 0.05
TRAFFIC_DROP_RATIO = 0.4
MIN_REQUESTS = 30
MIN_BASELINE_PER_MINUTE = 10.0
P95 = 0.95
MINUTE_STEP = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Minute:
    """One evaluated minute [start, start + 1 min); its value pools the SMOOTHING_MINUTES
    minutes ending with it."""

    start: datetime
    observed: float | None  # None: no requests to measure a latency or an error rate on
    requests: int  # pooled
    threshold: float | None  # None: no baseline for this minute's hour
    breaching: bool


@dataclasses.dataclass(frozen=True)
class Finding:
    """One signal of one endpoint at `at`. Its identity is (service, endpoint, signal);
    `key` is that identity as one string, "<signal>:<service>:<endpoint>", with `%` and
    `:` of the service percent-encoded (signals have neither), so it splits back
    unambiguously: `signal, service, endpoint = key.split(":", 2)`."""

    service: str
    endpoint: str
    signal: str  # latency_p95 (ms), error_rate (0..1) or traffic_drop (requests / minute)
    at: datetime
    firing: bool
    observed: float | None  # of the last evaluated minute
    threshold: float  # of the last evaluated minute
    baseline: Baseline  # of the last evaluated minute's hour of the week
    requests: int  # pooled requests of the last evaluated minute
    minutes: tuple[Minute, ...]  # the K evaluated minutes, oldest first

    @property
    def key(self) -> str:
        return f"{self.signal}:{quote(self.service, safe='')}:{self.endpoint}"


def evaluate(
    project,
    at: datetime,
    *,
    service: str | None = None,
    endpoint: str | None = None,
    connection: BaseDatabaseWrapper = default_connection,
) -> list[Finding]:
    """The findings of every signal of every endpoint of `project` (a Project or its id)
    with a baseline for the last closed minute before `at`, firing or not, sorted by key.
    `service`/`endpoint` limit the endpoints evaluated."""
    project_id = getattr(project, "pk", project)
    end = at.astimezone(UTC).replace(second=0, microsecond=0)
    minutes = [end - (K - n) * MINUTE_STEP for n in range(K)]
    filters = Filters(service=service, endpoint=endpoint)
    hours = sorted({hour_floor(minute) for minute in minutes})
    baselines = seasonal(project_id, hours, filters, connection)
    tail_start = minutes[0] - (SMOOTHING_MINUTES - 1) * MINUTE_STEP
    tail = KpiQuery(project_id, Window(tail_start, end), filters, connection)
    per_minute = {key: kpi for key, kpi in tail.per_group(("service", "endpoint"), MINUTE)}
    endpoints = sorted({(key[1], key[2]) for key in baselines})
    pools = {
        (name, minute): pool([
            per_minute.get((minute - n * MINUTE_STEP, *name)) for n in range(SMOOTHING_MINUTES)
        ])
        for name in endpoints for minute in minutes
    }  # fmt: skip
    p95s = dict(zip(pools, p95_of(list(pools.values())), strict=True))
    findings = []
    for name in endpoints:
        for signal in SIGNALS:
            last = baselines.get((hours[-1], *name), {}).get(signal)  # the last minute's
            if last is None:
                continue
            evaluated = tuple(
                _minute(signal, minute, pools[name, minute], p95s[name, minute],
                        baselines.get((hour_floor(minute), *name), {}).get(signal))
                for minute in minutes
            )  # fmt: skip
            findings.append(Finding(
                *name, signal, at.astimezone(UTC), all(m.breaching for m in evaluated),
                evaluated[-1].observed, evaluated[-1].threshold, last, evaluated[-1].requests,
                evaluated,
            ))  # fmt: skip
    return sorted(findings, key=lambda finding: finding.key)


def pool(kpis: list[Kpi | None]) -> Kpi:
    """The requests of several minutes as one KPI: counts add, sketches add."""
    present = [kpi for kpi in kpis if kpi is not None and kpi.hits]
    if not present:
        return Kpi()
    return Kpi(
        hits=sum(kpi.hits for kpi in present),
        errors=sum(kpi.errors for kpi in present),
        latency_min=min(kpi.latency_min for kpi in present),
        latency_max=max(kpi.latency_max for kpi in present),
        sketch=np.sum([kpi.sketch for kpi in present], axis=0),
    )


def _minute(signal: str, start: datetime, kpi: Kpi, p95: float | None,
            baseline: Baseline | None) -> Minute:  # fmt: skip
    observed = {
        LATENCY: p95,
        ERROR_RATE: kpi.errors / kpi.hits if kpi.hits else None,
        TRAFFIC: kpi.hits / SMOOTHING_MINUTES,
    }[signal]
    if baseline is None:
        return Minute(start, observed, kpi.hits, None, False)
    limit = threshold(signal, baseline)
    return Minute(start, observed, kpi.hits, limit, breaches(signal, kpi, limit, baseline))


def threshold(signal: str, baseline: Baseline) -> float:
    median, spread = baseline.median, Z * MAD_TO_SIGMA * baseline.mad
    if signal == LATENCY:
        return max(median + spread, LATENCY_RATIO * median)
    if signal == ERROR_RATE:
        return max(median + spread, median + ERROR_RATE_INCREASE)
    return max(0.0, min(median - spread, TRAFFIC_DROP_RATIO * median))


def breaches(signal: str, kpi: Kpi, limit: float, baseline: Baseline) -> bool:
    """Whether the pooled requests are beyond `limit` with EVIDENCE_Z confidence."""
    if signal == TRAFFIC:
        if baseline.median < MIN_BASELINE_PER_MINUTE:
            return False
        return poisson_upper(kpi.hits) < limit * SMOOTHING_MINUTES
    if kpi.hits < MIN_REQUESTS:
        return False
    if signal == ERROR_RATE:
        return wilson_lower(kpi.errors, kpi.hits) > limit
    # The p95 is above `limit` when significantly more than 5 % of requests are slower.
    # Only sketch buckets wholly above `limit` count (the one holding it may not).
    slower = float(kpi.sketch[sketch.bucket_of(limit) :].sum()) if kpi.sketch is not None else 0
    return wilson_lower(slower, kpi.hits) > 1 - P95


def wilson_lower(successes: float, trials: int, z: float = EVIDENCE_Z) -> float:
    """Lower bound of the Wilson score interval of a proportion."""
    share, z2 = successes / trials, z * z
    centre = share + z2 / (2 * trials)
    margin = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials))
    return (centre - margin) / (1 + z2 / trials)


def poisson_upper(count: int, z: float = EVIDENCE_Z) -> float:
    """Upper bound of the score interval of a Poisson count (z² when nothing came)."""
    return count + z * z / 2 + z * math.sqrt(count + z * z / 4)
