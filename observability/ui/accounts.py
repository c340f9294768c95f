"""Sign-in and sign-out, with throttling of failed sign-ins.

Failures are counted per user name from one address and per address (in the database,
so every worker counts the same); past the limit, sign-ins are refused until the window
ends, before the password is even checked.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.db import transaction
from django.utils import timezone

from observability.models import LoginThrottle

# An address may fail this many times more often than one user name from it (a shared
# office address has many users).
ADDRESS_FACTOR = 10


def client_address(request) -> str:
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


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins. Try again in %(minutes)s minute(s).",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = client_address(self.request)
        blocked = seconds_blocked(username, address)
        if blocked:
            raise forms.ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": max(1, math.ceil(blocked / 60))},
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            record_failure(username, address)
            raise
        forget_failures(username, address)
        return cleaned


class LoginView(auth_views.LoginView):
    template_name = "ui/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        throttled = any(error.code == "throttled" for error in form.non_field_errors().data)
        response.status_code = 429 if throttled else 400
        return response


class LogoutView(auth_views.LogoutView):
    """POST only (Django's LogoutView refuses GET): a link cannot sign anyone out."""
