"""Throttled sign-ins, for the UI's login page and the admin's.

Failures are counted in the database (every worker and node counts the same) per user
name from one address, and per address at ADDRESS_FACTOR times the limit (an office
behind one address has many users). Past APM_LOGIN_MAX_FAILURES within
APM_LOGIN_WINDOW_S, sign-ins are refused until the window ends, before the password is
even checked.
"""

from __future__ import annotations

import functools
import hashlib
import math
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from observability.models import LoginThrottle

ADDRESS_FACTOR = 10


def client_address(request: HttpRequest) -> str:
    """Behind the proxy (USE_X_FORWARDED_FOR), the last X-Forwarded-For entry: the
    address the proxy saw."""
    if settings.USE_X_FORWARDED_FOR:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _counted(username: str, address: str) -> list[tuple[str, int]]:
    """(key, failures allowed) of what one failed sign-in counts against."""
    limit = settings.APM_LOGIN_MAX_FAILURES

    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    return [
        (key(f"user:{username.casefold()}@{address}"), limit),
        (key(f"address:{address}"), limit * ADDRESS_FACTOR),
    ]


def seconds_blocked(username: str, address: str) -> int:
    """How long sign-ins of this user name from this address are refused (0: not)."""
    now, window = timezone.now(), timedelta(seconds=settings.APM_LOGIN_WINDOW_S)
    limits = dict(_counted(username, address))
    blocked = 0.0
    for row in LoginThrottle.objects.filter(key__in=limits, window_start__gt=now - window):
        if row.failures >= limits[row.key]:
            blocked = max(blocked, (row.window_start + window - now).total_seconds())
    return math.ceil(blocked)


def record_failure(username: str, address: str) -> None:
    now, window = timezone.now(), timedelta(seconds=settings.APM_LOGIN_WINDOW_S)
    for key, _ in _counted(username, address):
        # The row lock serialises concurrent failures of the same key.
        with transaction.atomic():
            row, created = LoginThrottle.objects.select_for_update().get_or_create(
                key=key, defaults={"failures": 1, "window_start": now}
            )
            if created:
                continue
            if row.window_start <= now - window:
                row.failures, row.window_start = 1, now
            else:
                row.failures += 1
            row.save(update_fields=["failures", "window_start"])


def forget_failures(username: str, address: str) -> None:
    """A successful sign-in clears its user name's count (not the address's)."""
    user_key = _counted(username, address)[0][0]
    LoginThrottle.objects.filter(key=user_key).delete()


def throttled(view):
    """A login view (the admin's) under the same counts: 429 with Retry-After while
    blocked; a POST that does not redirect (the form again) is a failure."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        username, address = request.POST.get("username", ""), client_address(request)
        blocked = seconds_blocked(username, address)
        if blocked:
            response = HttpResponse(
                f"Too many failed sign-ins; try again in {math.ceil(blocked / 60)} minute(s).\n",
                status=429, content_type="text/plain",
            )  # fmt: skip
            response["Retry-After"] = str(blocked)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302, 303):
            forget_failures(username, address)
        else:
            record_failure(username, address)
        return response

    return wrapper
