"""Settings of a project, for its admins: API keys (created with scopes, the secret shown
once, revoked), Apdex thresholds per service, retention in force, cardinality caps and
what overflowed."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import connection
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from observability.analytics import backend
from observability.ingest import cardinality
from observability.models import (
    ApiKey,
    Dimension,
    DimensionValue,
    Overflow,
    ServiceSettings,
)
from observability.ui.access import require_admin
from observability.ui.pages import Page, project_page


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in ApiKey.SCOPES],
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKey.SCOPE_READ],
    )


class ApdexForm(forms.ModelForm):
    class Meta:
        model = ServiceSettings
        fields = ["service", "apdex_t_ms"]


def _context(page: Page, **extra) -> dict:
    project = page.project
    services = page.services()
    thresholds = ServiceSettings.objects.apdex_thresholds(project.pk, set(services))
    admitted = (
        DimensionValue.objects.filter(project=project)
        .values("dimension", "scope")
        .annotate(values=Count("id"))
        .order_by("dimension", "scope")
    )
    caps = cardinality.caps()
    return page.context(
        keys=ApiKey.objects.filter(project=project).order_by("revoked_at", "name"),
        key_form=extra.pop("key_form", None) or ApiKeyForm(),
        apdex=[(service, thresholds[service]) for service in services],
        default_apdex=settings.APM_APDEX_T_MS,
        retention={
            "raw": settings.APM_RAW_RETENTION_DAYS,
            "hourly": settings.APM_HOURLY_RETENTION_DAYS,
            "daily": settings.APM_DAILY_RETENTION_DAYS,
        },
        backend=backend.of(connection).name,
        cardinality=[{**row, "cap": caps[row["dimension"]]} for row in admitted],
        caps={Dimension(dimension).label: cap for dimension, cap in caps.items()},
        overflows=Overflow.objects.filter(project=project).order_by("-last_at"),
        **extra,
    )


@project_page
def settings_page(request, page: Page):
    require_admin(page.role)
    return render(request, "ui/settings.html", _context(page))


@require_POST
@project_page
def create_key(request, page: Page):
    require_admin(page.role)
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return render(request, "ui/settings.html", _context(page, key_form=form), status=400)
    key, plaintext = ApiKey.objects.issue(
        page.project, form.cleaned_data["name"], form.cleaned_data["scopes"]
    )
    # The secret is rendered into this response only, never stored (not even in the
    # session for a redirect): reloading the page asks to send the form again.
    context = _context(page, new_key=key, plaintext=plaintext)
    return render(request, "ui/settings.html", context, status=201)


@require_POST
@project_page
def revoke_key(request, page: Page, key_id: int):
    require_admin(page.role)
    key = get_object_or_404(ApiKey, pk=key_id, project=page.project, revoked_at__isnull=True)
    key.revoke()
    messages.success(request, f"Key “{key.name}” ({key.prefix}) revoked.")
    return redirect(_settings_url(page))


@require_POST
@project_page
def set_apdex(request, page: Page):
    require_admin(page.role)
    existing = ServiceSettings.objects.filter(
        project=page.project, service=request.POST.get("service", "")
    ).first()
    form = ApdexForm(request.POST, instance=existing or ServiceSettings(project=page.project))
    if not form.is_valid():
        return render(request, "ui/settings.html", _context(page, apdex_form=form), status=400)
    saved = form.save()
    messages.success(
        request,
        f"Apdex T of {saved.service} is {saved.apdex_t_ms:g} ms for requests received from "
        "now on (ingest picks it up within a minute).",
    )
    return redirect(_settings_url(page))


def _settings_url(page: Page) -> str:
    query = page.scope.query()
    return reverse("ui:settings", args=[page.project.slug]) + (f"?{query}" if query else "")
