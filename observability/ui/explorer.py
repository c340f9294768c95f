"""Requests: the explorer (filters as the API's /api/v1/requests/, cursor pages, newest
first), one request's detail, and its similar requests."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from django import forms
from django.db.models import Q
from django.http import Http404
from django.shortcuts import render

from observability import ai
from observability.ai import search
from observability.analytics import sketches
from observability.models import ApiRequest, StatusClass
from observability.ui.pages import Page, project_page
from observability.ui.scope import check

PAGE_SIZE = 50
SIMILAR_SHOWN = 10


class RequestFilterForm(forms.Form):
    """The request list's filters; the window and environment come from the scope."""

    service = forms.CharField(required=False, max_length=128)
    endpoint = forms.CharField(required=False, max_length=512)
    method = forms.CharField(required=False, max_length=16)
    status_code = forms.IntegerField(required=False, min_value=100, max_value=599)
    status_class = forms.ChoiceField(required=False, choices=[("", "any"), *StatusClass.choices])
    min_latency_ms = forms.FloatField(required=False, min_value=0)
    max_latency_ms = forms.FloatField(required=False, min_value=0)
    cursor = forms.CharField(required=False, max_length=200)

    def clean_cursor(self):
        raw = self.cleaned_data["cursor"]
        if not raw:
            return None
        try:
            time_text, _, event_text = (
                base64.urlsafe_b64decode(raw.encode()).decode().partition("|")
            )
            return datetime.fromisoformat(time_text), uuid.UUID(event_text)
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise forms.ValidationError("Invalid cursor.") from exc


def cursor_of(row: ApiRequest) -> str:
    return base64.urlsafe_b64encode(f"{row.time.isoformat()}|{row.event_id}".encode()).decode()


def _filtered(page: Page, data: dict):
    window = page.scope.window
    rows = ApiRequest.objects.using(page.database.alias).filter(
        project_id=page.project.pk, time__gte=window.start, time__lt=window.end
    )
    exact = {name: data[name] for name in ("service", "endpoint", "status_code") if data[name]}
    if data["method"]:
        exact["method"] = data["method"].upper()
    if page.scope.environment:
        exact["environment"] = page.scope.environment
    rows = rows.filter(**exact)
    if data["status_class"]:
        low, high = StatusClass(data["status_class"]).status_range
        rows = rows.filter(status_code__gte=low, status_code__lt=high)
    if data["min_latency_ms"] is not None:
        rows = rows.filter(latency_ms__gte=data["min_latency_ms"])
    if data["max_latency_ms"] is not None:
        rows = rows.filter(latency_ms__lte=data["max_latency_ms"])
    if data["cursor"]:
        time, event_id = data["cursor"]
        rows = rows.filter(Q(time__lt=time) | Q(time=time, event_id__lt=event_id))
    return rows.order_by("-time", "-event_id")


def _page_of_rows(page: Page, request) -> dict:
    form = RequestFilterForm(request.GET)
    data = check(form)
    columns = ("event_id", "time", "service", "endpoint", "method", "status_code",
               "latency_ms", "environment", "host", "error_message")  # fmt: skip
    rows = list(_filtered(page, data).only(*columns)[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {k: v for k, v in request.GET.items() if k in form.fields and k != "cursor"}
    return {
        "rows": rows,
        "form": form,
        "filters": filters,
        "filtered": any(filters.values()),
        "first_page": data["cursor"] is None,
        "next_cursor": cursor_of(rows[-1]) if more else None,
    }


@project_page
def requests_page(request, page: Page):
    return render(request, "ui/requests.html", page.context(**_page_of_rows(page, request)))


@project_page
def requests_rows(request, page: Page):
    """The next page of the explorer's table (htmx fragment)."""
    return render(request, "ui/_request_rows.html", page.context(**_page_of_rows(page, request)))


def _request_or_404(page: Page, event_id: uuid.UUID) -> ApiRequest:
    row = (
        ApiRequest.objects.using(page.database.alias)
        .filter(project_id=page.project.pk, event_id=event_id)
        .order_by("-time")
        .first()
    )
    if row is None:
        raise Http404("No such request in this project.")
    return row


@project_page
def request_detail(request, page: Page, event_id: uuid.UUID):
    row = _request_or_404(page, event_id)
    return render(request, "ui/request_detail.html", page.context(row=row))


@project_page
def request_similar(request, page: Page, event_id: uuid.UUID):
    """The similar requests panel of a request's page (htmx fragment)."""
    _request_or_404(page, event_id)
    context = page.context(event_id=event_id, similar=None, unavailable=None)
    try:
        provider = semantic_provider(page)
        hits = search.similar(page.database, provider, page.project.pk, event_id, SIMILAR_SHOWN)
    except SemanticUnavailable as exc:
        context["unavailable"] = str(exc)
    except ai.EmbeddingError as exc:
        context["unavailable"] = f"The embedding provider failed: {exc}"
    else:
        if hits is None:
            context["unavailable"] = (
                "This request has no embedding yet: the embedding backfill (run_jobs, "
                "embed_apirequests) processes requests a few minutes after they arrive."
            )
        else:
            context["similar"] = search.requests_of(page.database, page.project.pk, hits)
    return render(request, "ui/_similar.html", context)


class SemanticUnavailable(RuntimeError):
    """Semantic search cannot run here: no pgvector, or no embedding provider."""


def semantic_provider(page: Page) -> ai.Provider:
    if not sketches.of(page.database).has_pgvector:
        raise SemanticUnavailable(ai.NO_VECTOR_EXTENSION)
    try:
        return ai.require_provider()
    except ai.NoProvider as exc:
        raise SemanticUnavailable(str(exc)) from exc
