"""Apdex thresholds of services, cached per process for a minute.

A threshold changed in the admin applies to requests received after at most
CACHE_SECONDS; the rollups count each request with the threshold it was received under.
"""

from __future__ import annotations

import time

from observability.ingest.cache import LruCache
from observability.models import ServiceSettings

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 20_000

# (project_id, service) -> (threshold, fetched at)
_cache: LruCache[tuple[float, float]] = LruCache(CACHE_ENTRIES)


def apdex_thresholds(project_id: int, services: set[str]) -> dict[str, float]:
    now = time.monotonic()
    known = {}
    for service in services:
        cached = _cache.get((project_id, service))
        if cached and now - cached[1] < CACHE_SECONDS:
            known[service] = cached[0]
    missing = services - known.keys()
    if missing:
        for service, threshold in ServiceSettings.objects.apdex_thresholds(
            project_id, missing
        ).items():
            _cache.put((project_id, service), (threshold, now))
            known[service] = threshold
    return known


def forget_cache() -> None:
    _cache.clear()
