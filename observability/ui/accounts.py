"""Sign-in and sign-out, with throttling of failed sign-ins (apm_platform/login_throttle.py,
shared with the admin's login)."""

from __future__ import annotations

import math

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm

from apm_platform import login_throttle


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins. Try again in %(minutes)s minute(s).",
    }

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = login_throttle.client_address(self.request)
        blocked = login_throttle.seconds_blocked(username, address)
        if blocked:
            raise forms.ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": max(1, math.ceil(blocked / 60))},
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_throttle.record_failure(username, address)
            raise
        login_throttle.forget_failures(username, address)
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
