"""KPI points turned into the column arrays uPlot draws (x: epoch seconds).

A bucket without requests has no latency, error rate or Apdex: those are null (a gap in
the line), not zero.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from observability.analytics import sketch

STATUS_CLASSES = {2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx", 1: "1xx"}
# Sketch buckets merged into one bar of the distribution: 8 buckets of 1.8 % are ~15 %.
DISTRIBUTION_MERGE = 8


def _epochs(points: list[dict]) -> list[int]:
    return [int(point["bucket"].timestamp()) for point in points]


def kpi_columns(points: list[dict]) -> dict:
    """Latency percentiles and Apdex of a time series."""

    def when_hits(value, point):
        return value if point["hits"] else None

    return {
        "x": _epochs(points),
        "p50": [when_hits(p["latency_ms"]["p50"], p) for p in points],
        "p95": [when_hits(p["latency_ms"]["p95"], p) for p in points],
        "p99": [when_hits(p["latency_ms"]["p99"], p) for p in points],
        "apdex": [when_hits(p["apdex"], p) for p in points],
    }


def traffic_columns(series: dict[int, list[dict]]) -> dict:
    """Requests per second of each status class seen (2xx first), and the error rate
    (5xx, %) of each bucket, from traffic_by("status_class")."""
    if not series:
        return {"x": [], "classes": []}
    buckets = next(iter(series.values()))
    columns: dict = {"x": _epochs(buckets)}
    hits = [0] * len(buckets)
    for status_class, name in sorted(STATUS_CLASSES.items(), key=lambda item: item[1]):
        points = series.get(status_class)
        if points:
            columns[name] = [round(p["rps"], 4) for p in points]
            hits = [total + p["hits"] for total, p in zip(hits, points, strict=True)]
    errors = [p["hits"] for p in series.get(5, [])] or [0] * len(buckets)
    columns["classes"] = [name for name in columns if name != "x"]
    columns["error_rate"] = [
        round(100 * e / h, 3) if h else None for e, h in zip(errors, hits, strict=True)
    ]
    return columns


def sparkline(points: list[dict]) -> dict:
    return {"x": _epochs(points), "rps": [round(p["rps"], 4) for p in points]}


def distribution(buckets: list[tuple[float, float, int]]) -> dict:
    """Request counts per latency band (log-spaced), from the sketch's buckets."""
    bands: dict[int, list] = {}
    for low, high, count in buckets:
        band = bands.setdefault(_band_of(low, high), [low, high, 0])
        band[0], band[1] = min(band[0], low), max(band[1], high)
        band[2] += count
    ordered = [bands[key] for key in sorted(bands)]
    return {
        "x": [_significant(high) for _, high, _ in ordered],
        "low": [_significant(low) for low, _, _ in ordered],
        "count": [count for _, _, count in ordered],
    }


def _band_of(low: float, high: float) -> int:
    """Which band a sketch bucket falls in: its position on the log scale (the high bound
    of bucket b is MIN_MS * GAMMA^(b-1)), DISTRIBUTION_MERGE buckets a band."""
    return round(math.log(high / sketch.MIN_MS) / sketch.LN_GAMMA) // DISTRIBUTION_MERGE


def _significant(value: float) -> float:
    """Four significant digits: sub-millisecond bands stay apart, JSON stays short."""
    return float(f"{value:.4g}")


def hourly_counts(hours: list[dict], start: datetime, end: datetime) -> dict:
    """Occurrences per UTC hour from `start` (an hour's start) to `end`: every hour, 0
    where the timeline has none (no occurrence is a count of zero, not a gap)."""
    counts = {int(hour["bucket"].timestamp()): hour["count"] for hour in hours}
    hour = int(timedelta(hours=1).total_seconds())
    x = list(range(int(start.timestamp()), int(end.timestamp()), hour))
    return {"x": x, "count": [counts.get(epoch, 0) for epoch in x]}
