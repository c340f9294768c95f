"""Synthetic traffic of a known shape, sent through the real ingest API, for the alerting
tests: requests evenly spaced in time, with failures evenly spread among them, so that
every window's error rate is the shape's (up to one request)."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

BATCH = 5000


def steady(
    start: datetime,
    duration: timedelta,
    per_minute: float,
    error_rate: float,
    service: str = "checkout",
    endpoint: str = "/pay",
) -> list[dict]:
    """Events over [start, start + duration): `per_minute` requests a minute, a 503 for
    every 1/error_rate of them."""
    count = int(duration.total_seconds() / 60 * per_minute)
    step = 60.0 / per_minute
    events = []
    for i in range(count):
        failed = math.floor((i + 1) * error_rate) > math.floor(i * error_rate)
        events.append({
            "event_id": str(uuid.uuid4()),
            "time": (start + timedelta(seconds=i * step)).isoformat(),
            "service": service, "endpoint": endpoint, "method": "GET",
            "status_code": 503 if failed else 200, "latency_ms": 40.0,
        })  # fmt: skip
    return events


def send(api, events: list[dict]) -> None:
    """POST the events to /api/v1/ingest/ in batches; every one must be stored."""
    for n in range(0, len(events), BATCH):
        batch = events[n : n + BATCH]
        response = api.post("/api/v1/ingest/", batch, format="json")
        assert response.status_code == 200, response.content[:500]
        assert response.json()["accepted"] == len(batch), response.json()
