"""Liveness and readiness probes.

/healthz answers as long as the process serves requests; /readyz only when the
database answers and every migration is applied, so a load balancer or Compose
health check sends traffic to an instance that can actually serve it. Only the
monitoring path (a direct connection from a loopback or private address, not through
the proxy) gets the details, database errors included; anyone else gets the status.
"""

from __future__ import annotations

import ipaddress
import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from apm_platform import db_router
from apm_platform.telemetry import DB_ERRORS

# Once every migration is applied it stays applied for this process's code.
_migrations_complete = False


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database()}
    if checks["database"]["ok"]:
        checks["migrations"] = _check_migrations()
    ready = all(check["ok"] for check in checks.values())
    status = 200 if ready else 503
    body = {"status": "ok" if ready else "unavailable"}
    if not from_monitoring(request):
        return JsonResponse(body, status=status)
    body["checks"] = checks
    if settings.DATABASE_REPLICAS:
        # Informational: reads fall back to the primary, so a replica never makes us unready.
        body["replicas"] = {alias: _replica_report(alias) for alias in settings.DATABASE_REPLICAS}
    return JsonResponse(body, status=status)


def from_monitoring(request: HttpRequest) -> bool:
    """A probe on the private network: a loopback or private peer, and not a request the
    proxy forwarded (the shipped Nginx sets X-Forwarded-For on every request it passes)."""
    if "HTTP_X_FORWARDED_FOR" in request.META:
        return False
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return peer.is_loopback or peer.is_private


def _replica_report(alias: str) -> dict:
    status = db_router.replica_status(alias)
    return {
        "usable": status.usable,
        "reachable": status.reachable,
        "in_recovery": status.in_recovery,
        "wal_receiver": status.receiver,
        "lag_s": status.lag_s,
        "error": status.error,
    }


def _check_database() -> dict:
    started = time.perf_counter()
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        DB_ERRORS.labels("readyz", type(exc).__name__).inc()
        return {"ok": False, "error": str(exc).strip().splitlines()[0]}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _check_migrations() -> dict:
    global _migrations_complete
    if _migrations_complete:
        return {"ok": True, "pending": 0}
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    _migrations_complete = not pending
    return {"ok": not pending, "pending": len(pending)}
