"""Per-service endpoint cardinality cap.

Each worker remembers the endpoints it has seen admitted, so the database is only
consulted when a batch brings an endpoint this process has not seen. Admission of new
endpoints for one service is serialised with an advisory lock so that concurrent
workers cannot together exceed the cap.
"""

from __future__ import annotations

from django.db import connection, transaction

from observability.locks import Lock, xact_lock
from observability.models import Endpoint

OVERFLOW_ENDPOINT = "{overflow}"

# (project_id, service) -> endpoints admitted. Bounded by the cap per service.
_admitted: dict[tuple[int, str], set[str]] = {}


def overflowing(project_id: int, pairs: set[tuple[str, str]], cap: int) -> set[tuple[str, str]]:
    """The (service, endpoint) pairs beyond their service's cap, admitting the others."""
    unknown: dict[str, set[str]] = {}
    for service, endpoint in pairs:
        if endpoint not in _admitted.get((project_id, service), ()):
            unknown.setdefault(service, set()).add(endpoint)
    rejected = set()
    for service, endpoints in unknown.items():
        rejected |= {(service, e) for e in _admit(project_id, service, endpoints, cap)}
    return rejected


def _admit(project_id: int, service: str, endpoints: set[str], cap: int) -> set[str]:
    """Register as many of `endpoints` as the cap allows; return the rest."""
    known = _admitted.setdefault((project_id, service), set())
    if len(known) >= cap:
        return endpoints  # full: no need to ask the database
    # Own short transaction, committed before the events are written: an admitted
    # endpoint whose batch then fails is harmless, a cap exceeded by a race is not.
    with transaction.atomic():
        with connection.cursor() as cursor:
            xact_lock(cursor, Lock.ENDPOINT_ADMISSION, f"{project_id}/{service}")
        known |= set(
            Endpoint.objects.filter(project_id=project_id, service=service).values_list(
                "endpoint", flat=True
            )
        )
        new = sorted(endpoints - known)
        room = max(0, cap - len(known))
        admitted, rejected = new[:room], new[room:]
        Endpoint.objects.bulk_create(
            [Endpoint(project_id=project_id, service=service, endpoint=e) for e in admitted],
            ignore_conflicts=True,
        )
    known.update(admitted)
    return set(rejected)


def forget_cache() -> None:
    """For tests: start again from what the database says."""
    _admitted.clear()
