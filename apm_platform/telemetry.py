"""The app's own telemetry: request ids, access log lines, Prometheus metrics.

Under gunicorn every worker keeps its own counters; with PROMETHEUS_MULTIPROC_DIR set
(the gunicorn config and images set it) prometheus_client aggregates them on scrape.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

from apm_platform.http import standard_method
from apm_platform.jsonlog import request_id_var

access_logger = logging.getLogger("apm.access")

HTTP_REQUESTS = Counter(
    "apm_http_requests_total",
    "HTTP requests served, by view and status.",
    ["view", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "apm_http_request_duration_seconds",
    "Time to serve an HTTP request, by view.",
    ["view", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_ERRORS = Counter(
    "apm_db_errors_total", "Database errors seen while serving requests.", ["view", "error"]
)

# A client-supplied X-Request-ID is kept only if it looks like an id, not a payload.
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RequestTelemetryMiddleware:
    """Request id, one access log line and the HTTP metrics for every request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_PATTERN.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            duration = time.perf_counter() - started
            response["X-Request-ID"] = request_id
            self._record(request, response.status_code, duration)
            return response
        finally:
            request_id_var.reset(token)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, DatabaseError):
            DB_ERRORS.labels(_view_name(request), type(exception).__name__).inc()

    @staticmethod
    def _record(request: HttpRequest, status: int, duration: float) -> None:
        view = _view_name(request)
        # Any client can send any method: only the standard ones become label values.
        method = standard_method(request.method)
        HTTP_REQUESTS.labels(view, method, str(status)).inc()
        HTTP_LATENCY.labels(view, method).observe(duration)
        access_logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "view": view,
                "status": status,
                "duration_ms": round(duration * 1000, 2),
            },
        )


def _view_name(request: HttpRequest) -> str:
    # Label by route, never by raw path: raw paths would explode the series count.
    match = getattr(request, "resolver_match", None)
    return match.view_name if match and match.view_name else "unmatched"


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text exposition of this app's metrics (all workers)."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = DEFAULT_REGISTRY
    return HttpResponse(
        generate_latest(registry) + _alerting_metrics(), content_type=CONTENT_TYPE_LATEST
    )


def _alerting_metrics() -> bytes:
    """SLO, alert and channel series, read from the database (not per worker)."""
    from observability.alerting.metrics import AlertingCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(AlertingCollector())
    try:
        return generate_latest(registry)
    except DatabaseError:
        return b""  # the process metrics stay scrapeable while the database is down
