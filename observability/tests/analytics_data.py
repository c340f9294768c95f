"""Deterministic request data for the analytics tests, and an independent reference.

The reference computes every KPI from the generated rows in plain Python (never from
the database), so a test compares the product's answer with the definition.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import datetime, timedelta

from observability.models import ApiRequest, Project

SERVICES = {"checkout": ["/cart", "/pay"], "search": ["/search"], "users": ["/users/{id}"]}
METHODS = ["GET", "POST"]
ENVIRONMENTS = ["production", "staging"]


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def bimodal(rng: random.Random) -> float:
    """Cache hits around 8 ms, misses around 400 ms."""
    return lognormal(rng, 8, 0.3) if rng.random() < 0.7 else lognormal(rng, 400, 0.4)


def generate(
    project: Project, start: datetime, end: datetime, count: int, seed: int = 1, latency=None
) -> list[dict]:
    """`count` requests spread over [start, end), stored, and returned as dicts."""
    rng = random.Random(seed)
    latency = latency or (lambda r: lognormal(r, 120, 0.9))
    rows = []
    span = (end - start).total_seconds()
    for _ in range(count):
        service = rng.choice(list(SERVICES))
        roll = rng.random()
        status = 503 if roll < 0.05 else 404 if roll < 0.12 else 200
        rows.append({
            "time": start + timedelta(seconds=rng.random() * span),
            "service": service,
            "endpoint": rng.choice(SERVICES[service]),
            "method": rng.choice(METHODS),
            "status_code": status,
            "latency_ms": round(latency(rng), 3),
            "environment": rng.choice(ENVIRONMENTS),
            "apdex_t_ms": 300.0 if service != "search" else 500.0,
        })  # fmt: skip
    store(project, rows)
    return rows


def store(project: Project, rows: list[dict]) -> None:
    ApiRequest.objects.bulk_create(
        ApiRequest(project=project, event_id=uuid.uuid4(), **row) for row in rows
    )


def percentile_disc(values: list[float], q: float) -> float:
    """PostgreSQL's percentile_disc: the first value whose rank reaches q * N."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def reference(rows: list[dict], start: datetime, end: datetime, **filters) -> dict:
    """The KPIs of the rows in [start, end) matching `filters`, by definition."""
    selected = [
        row for row in rows
        if start <= row["time"] < end and all(_matches(row, k, v) for k, v in filters.items())
    ]  # fmt: skip
    hits = len(selected)
    latencies = [row["latency_ms"] for row in selected]
    errors = sum(row["status_code"] >= 500 for row in selected)
    satisfied = sum(
        row["status_code"] < 500 and row["latency_ms"] <= row["apdex_t_ms"] for row in selected
    )
    tolerating = sum(
        row["status_code"] < 500 and row["apdex_t_ms"] < row["latency_ms"] <= 4 * row["apdex_t_ms"]
        for row in selected
    )
    return {
        "hits": hits,
        "errors": errors,
        "error_rate": errors / hits if hits else 0.0,
        "rps": hits / (end - start).total_seconds(),
        "apdex": (satisfied + tolerating / 2) / hits if hits else None,
        "avg": sum(latencies) / hits if hits else None,
        "max": max(latencies) if hits else None,
        "p50": percentile_disc(latencies, 0.5) if hits else None,
        "p95": percentile_disc(latencies, 0.95) if hits else None,
        "p99": percentile_disc(latencies, 0.99) if hits else None,
    }


def _matches(row: dict, name: str, value) -> bool:
    if name == "status_class":
        return row["status_code"] // 100 == int(value[0])
    return row[name] == value
