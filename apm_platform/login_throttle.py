"""Throttled logins: after LOGIN_FAILURE_LIMIT failed attempts for one user name or
from one address within LOGIN_FAILURE_WINDOW_S, further attempts are refused (429) until
the window has passed. The counts live in the database cache, shared by every worker.

Used for the admin's login page (apm_platform/urls.py) and any other login view.
"""

from __future__ import annotations

import functools
import hashlib

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse


def _keys(request: HttpRequest) -> list[str]:
    username = request.POST.get("username", "").strip().lower()
    address = request.META.get("REMOTE_ADDR", "")
    return [
        "login-failures:user:" + hashlib.sha256(username.encode()).hexdigest(),
        "login-failures:addr:" + hashlib.sha256(address.encode()).hexdigest(),
    ]


def throttled(view):
    """A login view that answers 429 once the failures of its user or address are over
    the limit; a failed attempt is one that does not redirect (the form is shown again)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        keys = _keys(request)
        limit, window = settings.LOGIN_FAILURE_LIMIT, settings.LOGIN_FAILURE_WINDOW_S
        if any(cache.get(key, 0) >= limit for key in keys):
            response = HttpResponse(
                f"Too many failed logins; try again in {window // 60} minutes.\n",
                status=429, content_type="text/plain",
            )  # fmt: skip
            response["Retry-After"] = str(window)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302, 303):
            cache.delete_many(keys)  # logged in
        else:
            for key in keys:
                cache.add(key, 0, timeout=window)
                cache.incr(key)
        return response

    return wrapper
