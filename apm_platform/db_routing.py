"""Per-request routing state: which database this request reads from, and why.

A request reads from the primary when it writes, when its project wrote within
READ_AFTER_WRITE_TTL seconds (read-after-write, shared by every key of the project), or
inside `transaction.atomic`; otherwise from one healthy replica, the same one for the
whole request (one request reads one database: two replicas may lag differently). The
"project wrote" fact lives in the database (Project.last_write_at, or the browser
session), so it holds across processes and workers; this module only carries the
decision for the current request.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclasses.dataclass
class Routing:
    safe: bool = True  # a read-only request, which may be run again
    pinned: bool = False  # reads go to the primary
    read_alias: str | None = None  # the database chosen for this request's reads
    connection_failed: bool = False  # a read failed for a connection reason
    retried: bool = False

    def should_retry_on_primary(self, primary: str) -> bool:
        """A replica failed under a read-only request not yet retried."""
        return (
            self.safe
            and self.connection_failed
            and not self.retried
            and self.read_alias not in (None, primary)
        )


_routing: contextvars.ContextVar[Routing | None] = contextvars.ContextVar(
    "request_routing", default=None
)


def current() -> Routing:
    """This request's routing; outside a request, a fresh unpinned one each time."""
    return _routing.get() or Routing()


def in_request() -> bool:
    return _routing.get() is not None


def is_pinned() -> bool:
    return current().pinned


def pin_to_primary() -> None:
    """Send the rest of this request's reads to the primary."""
    routing = _routing.get()
    if routing is not None:
        routing.pinned, routing.read_alias = True, None


def recently_wrote(last_write_at: datetime | None) -> bool:
    if last_write_at is None:
        return False
    return timezone.now() - last_write_at < timedelta(seconds=settings.READ_AFTER_WRITE_TTL)


def is_connection_failure(exc: BaseException) -> bool:
    """A database error of the connection (gone, refused, reset), not of the query (a
    statement timeout, a bad value): only those are worth retrying elsewhere."""
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        return not isinstance(exc.__cause__, psycopg.errors.QueryCanceled)
    return False


def note_database_error(exc: BaseException) -> None:
    routing = _routing.get()
    if routing is not None and is_connection_failure(exc):
        routing.connection_failed = True


@contextlib.contextmanager
def request_scope(method: str) -> Iterator[Routing]:
    """Routing state for one request: writes pin themselves from the start."""
    safe = method in SAFE_METHODS
    token = _routing.set(Routing(safe=safe, pinned=not safe))
    try:
        yield _routing.get()
    finally:
        _routing.reset(token)
