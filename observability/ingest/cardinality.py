"""Caps on the dimensions a client controls: services and environments per project,
endpoints per service.

A value beyond its cap is stored as OVERFLOW, so a client sending raw ids or made-up
names cannot create unbounded rollup series; each overflow is counted (per project, in
`apm_overflow`, and in Prometheus). Each worker remembers the values it has seen
admitted (a bounded cache), so the database is consulted only for values this process
has not seen. Admission of new values for one (project, dimension, scope) is serialised
with an advisory lock so that concurrent workers cannot together exceed the cap.
"""

from __future__ import annotations

import dataclasses
from collections import Counter as Tally

from django.conf import settings
from django.db import connection, transaction
from prometheus_client import Counter

from observability.ingest.cache import LruCache
from observability.ingest.events import Row
from observability.locks import Lock, xact_lock
from observability.models import Dimension, DimensionValue

OVERFLOW = "{overflow}"
CACHE_ENTRIES = 10_000  # (project, dimension, scope) sets per worker

OVERFLOW_EVENTS = Counter(
    "apm_ingest_overflow_events_total",
    "Events stored under an overflow value because a dimension hit its cardinality cap.",
    ["source", "dimension"],
)

# (project_id, dimension, scope) -> values admitted. Each set is bounded by its cap.
_admitted: LruCache[set[str]] = LruCache(CACHE_ENTRIES)


def caps() -> dict[str, int]:
    return {
        Dimension.SERVICE: settings.APM_SERVICE_CARDINALITY_CAP,
        Dimension.ENVIRONMENT: settings.APM_ENVIRONMENT_CARDINALITY_CAP,
        Dimension.ENDPOINT: settings.APM_ENDPOINT_CARDINALITY_CAP,
    }


@dataclasses.dataclass
class Capped:
    rows: list[Row]
    overflowed: int  # events with at least one value moved to OVERFLOW


def cap_rows(project_id: int, rows: list[Row], source: str) -> Capped:
    """The rows with over-cap services, environments and endpoints moved to OVERFLOW.

    Services first: an overflowed service's endpoints are capped under OVERFLOW.
    """
    limits = caps()
    # One pass over the rows; the loops below go over the few distinct values.
    sent = {(row.service, row.environment, row.endpoint) for row in rows}
    services_sent = {service for service, _, _ in sent}
    environments_sent = {environment for _, environment, _ in sent}
    services = _overflowing(project_id, Dimension.SERVICE, "", services_sent, limits)
    environments = _overflowing(project_id, Dimension.ENVIRONMENT, "", environments_sent, limits)
    if services or environments:
        rows = [_moved(row, services, environments) for row in rows]
        sent = {(row.service, row.environment, row.endpoint) for row in rows}
    by_service: dict[str, set[str]] = {}
    for service, _, endpoint in sent:
        by_service.setdefault(service, set()).add(endpoint)
    endpoints = {
        (service, endpoint)
        for service, names in by_service.items()
        for endpoint in _overflowing(project_id, Dimension.ENDPOINT, service, names, limits)
    }
    if endpoints:
        rows = [
            row._replace(endpoint=OVERFLOW) if (row.service, row.endpoint) in endpoints else row
            for row in rows
        ]
    sent_overflow = (
        OVERFLOW in services_sent
        or OVERFLOW in environments_sent
        or any(OVERFLOW in names for names in by_service.values())
    )
    if not (services or environments or endpoints or sent_overflow):
        return Capped(rows, 0)  # the common case: nothing to count, no pass over the rows
    tally = Tally()
    tally.update((Dimension.SERVICE, "") for row in rows if row.service == OVERFLOW)
    tally.update((Dimension.ENVIRONMENT, "") for row in rows if row.environment == OVERFLOW)
    tally.update((Dimension.ENDPOINT, row.service) for row in rows if row.endpoint == OVERFLOW)
    if tally:
        _count_overflow(project_id, tally, source)
    overflowed = sum(OVERFLOW in (row.service, row.environment, row.endpoint) for row in rows)
    return Capped(rows, overflowed)


def _moved(row: Row, services: set[str], environments: set[str]) -> Row:
    if row.service not in services and row.environment not in environments:
        return row
    return row._replace(
        service=OVERFLOW if row.service in services else row.service,
        environment=OVERFLOW if row.environment in environments else row.environment,
    )


def _overflowing(
    project_id: int, dimension: str, scope: str, values: set[str], limits: dict[str, int]
) -> set[str]:
    """The values beyond the cap of (project, dimension, scope), admitting the others."""
    values = values - {OVERFLOW}
    known = _admitted.get((project_id, dimension, scope))
    unknown = values - known if known is not None else values
    if not unknown:
        return set()
    return _admit(project_id, dimension, scope, unknown, limits[dimension])


def _admit(project_id: int, dimension: str, scope: str, values: set[str], cap: int) -> set[str]:
    """Register as many of `values` as the cap allows; return the rest."""
    key = (project_id, dimension, scope)
    known = _admitted.get(key) or _admitted.put(key, set())
    if len(known) >= cap:
        return values  # full: no need to ask the database
    # Own short transaction, committed before the events are written: an admitted value
    # whose batch then fails is harmless, a cap exceeded by a race is not.
    with transaction.atomic():
        with connection.cursor() as cursor:
            xact_lock(cursor, Lock.DIMENSION_ADMISSION, f"{project_id}/{dimension}/{scope}")
        stored = DimensionValue.objects.filter(
            project_id=project_id, dimension=dimension, scope=scope
        )
        known |= set(stored.values_list("value", flat=True))
        new = sorted(values - known)
        room = max(0, cap - len(known))
        admitted, rejected = new[:room], new[room:]
        DimensionValue.objects.bulk_create(
            [
                DimensionValue(project_id=project_id, dimension=dimension, scope=scope, value=v)
                for v in admitted
            ],
            ignore_conflicts=True,
        )
    known.update(admitted)
    return set(rejected)


COUNT_OVERFLOW = """
INSERT INTO apm_overflow (project_id, dimension, scope, events, last_at)
VALUES (%(project)s, %(dimension)s, %(scope)s, %(events)s, now())
ON CONFLICT (project_id, dimension, scope)
DO UPDATE SET events = apm_overflow.events + EXCLUDED.events, last_at = EXCLUDED.last_at
"""


def _count_overflow(project_id: int, tally: Tally, source: str) -> None:
    with connection.cursor() as cursor:
        for (dimension, scope), events in tally.items():
            OVERFLOW_EVENTS.labels(source, dimension).inc(events)
            cursor.execute(COUNT_OVERFLOW, {
                "project": project_id, "dimension": dimension, "scope": scope, "events": events,
            })  # fmt: skip


def forget_cache() -> None:
    """For tests: start again from what the database says."""
    _admitted.clear()
