"""Per-request routing state: must this request read from the primary?

A request reads from the primary when it writes, when its client wrote within
READ_AFTER_WRITE_TTL seconds (read-after-write), or inside `transaction.atomic`. The
"client wrote" fact lives in the database (ApiKey.last_write_at, or the browser
session), so it holds across processes and workers; this module only carries the
decision for the current request.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_pinned: contextvars.ContextVar[bool] = contextvars.ContextVar("pinned_to_primary", default=False)


def is_pinned() -> bool:
    return _pinned.get()


def pin_to_primary() -> None:
    """Send the rest of this request's reads to the primary."""
    _pinned.set(True)


def recently_wrote(last_write_at: datetime | None) -> bool:
    if last_write_at is None:
        return False
    return timezone.now() - last_write_at < timedelta(seconds=settings.READ_AFTER_WRITE_TTL)


@contextlib.contextmanager
def request_scope(method: str) -> Iterator[None]:
    """Routing state for one request: writes pin themselves from the start."""
    token = _pinned.set(method not in SAFE_METHODS)
    try:
        yield
    finally:
        _pinned.reset(token)
