"""Each request's routing state: which database it reads, who wrote, and one retry.

Writes (unsafe methods) read from the primary for their whole request. After a
successful write, the project is remembered as having written (Project.last_write_at,
checked when any of its keys authenticates) and so is the browser session, so that
reads of the project for READ_AFTER_WRITE_TTL seconds, served by any worker, go to the
primary too. A read-only request whose replica failed for a connection reason (it died,
or stopped answering until the TCP keepalives gave up) is marked down and the request
is run again on the primary, once.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apm_platform import db_router, db_routing

SESSION_KEY = "apm_wrote_at"


class DatabaseRoutingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with db_routing.request_scope(request.method) as routing:
            if self._session_wrote_recently(request):
                db_routing.pin_to_primary()
            response = self.get_response(request)
            if routing.should_retry_on_primary(DEFAULT_DB_ALIAS):
                response = self._retry_on_primary(request, routing)
            if not routing.safe and 200 <= response.status_code < 300:
                self._remember_write(request)
            return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        # Views outside the API (DRF's handler notes its own): a failed replica read.
        db_routing.note_database_error(exception)

    def _retry_on_primary(self, request: HttpRequest, routing: db_routing.Routing):
        failed = routing.read_alias
        db_router.mark_unreachable(failed, "a request's connection to it failed")
        db_router.RETRIES.labels(failed).inc()
        routing.retried, routing.connection_failed = True, False
        db_routing.pin_to_primary()
        return self.get_response(request)

    @staticmethod
    def _session_wrote_recently(request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        if session is None or not session.session_key:
            return False
        wrote_at = session.get(SESSION_KEY)
        return db_routing.recently_wrote(parse_datetime(wrote_at) if wrote_at else None)

    @staticmethod
    def _remember_write(request: HttpRequest) -> None:
        key = getattr(request, "auth", None)
        project = getattr(key, "project", None)
        if project is not None and hasattr(project, "record_write"):
            project.record_write()
        session = getattr(request, "session", None)
        if session is not None and session.session_key:
            session[SESSION_KEY] = timezone.now().isoformat()
