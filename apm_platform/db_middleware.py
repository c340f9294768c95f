"""Marks each request's routing state and remembers which clients wrote.

Writes (unsafe methods) read from the primary for their whole request. After a
successful write, the client is remembered as having written: on its API key
(ApiKey.last_write_at, checked when the key authenticates) or in its browser session,
so that its reads for READ_AFTER_WRITE_TTL seconds, served by any worker, go to the
primary too.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apm_platform import db_routing

SESSION_KEY = "apm_wrote_at"


class DatabaseRoutingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with db_routing.request_scope(request.method):
            if self._session_wrote_recently(request):
                db_routing.pin_to_primary()
            response = self.get_response(request)
            if request.method not in db_routing.SAFE_METHODS and 200 <= response.status_code < 300:
                self._remember_write(request)
            return response

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
        if key is not None and hasattr(key, "record_write"):
            key.record_write()
        session = getattr(request, "session", None)
        if session is not None and session.session_key:
            session[SESSION_KEY] = timezone.now().isoformat()
