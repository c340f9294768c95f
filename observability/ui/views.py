"""The analytics pages: Overview (every service), Service, Endpoint. Each reads the
analytics domain directly (KpiQuery) on the read database."""

from __future__ import annotations

from collections import Counter

from django import forms
from django.conf import settings
from django.shortcuts import redirect, render

from observability.analytics.queries import RANKINGS
from observability.models import ApiRequest, Project
from observability.ui import charts
from observability.ui.pages import Page, project_page
from observability.ui.scope import check

# The Endpoint page's lists of requests read this many of its newest requests in range.
RECENT_SAMPLE = 2000
RECENT_SHOWN = 10
ENDPOINTS_SHOWN = 100
# The endpoints table's columns, each sortable (the rankings of the top-endpoints query).
ENDPOINT_COLUMNS = [("hits", "Requests"), ("errors", "5xx"), ("error_rate", "Error rate"),
                    ("p50", "p50"), ("p95", "p95"), ("p99", "p99"), ("apdex", "Apdex")]  # fmt: skip


def home(request):
    """The first project the user may see (the login page when signed out)."""
    if not request.user.is_authenticated:
        return redirect("ui:login")
    project = Project.objects.visible_to(request.user).first()
    if project is None:
        return render(request, "ui/no_projects.html")
    return redirect("ui:overview", slug=project.slug)


@project_page
def overview(request, page: Page):
    scope = page.scope
    current = page.kpi().services()
    before = {row["service"]: row for row in page.kpi(window=scope.previous).services()}
    sparks = page.kpi().traffic_by("service", scope.sparkline_interval())
    rows, chart_data = [], {}
    for n, row in enumerate(current):
        chart_data[f"spark-{n}"] = charts.sparkline(sparks.get(row["service"], []))
        rows.append({**row, "previous": before.get(row["service"]), "chart": f"spark-{n}"})
    context = page.context(
        services=rows,
        totals=page.kpi().totals(),
        previous=page.kpi(window=scope.previous).totals(),
        charts=chart_data,
    )
    return render(request, "ui/overview.html", context)


class ServiceForm(forms.Form):
    service = forms.CharField(max_length=128)
    sort = forms.ChoiceField(choices=[(by, by) for by in RANKINGS], required=False)


class EndpointForm(forms.Form):
    service = forms.CharField(max_length=128)
    endpoint = forms.CharField(max_length=512)
    method = forms.CharField(max_length=16)


def _summary(page: Page, **filters) -> dict:
    """Cards and latency distribution of one service or endpoint; its charts come as
    fragments (charts_fragment), so that no response waits for every query."""
    query = page.kpi(**filters)
    return {
        "totals": query.totals(),
        "previous": page.kpi(window=page.scope.previous, **filters).totals(),
        "charts": {"distribution": charts.distribution(query.distribution())},
    }


class ChartsForm(forms.Form):
    part = forms.ChoiceField(choices=[("traffic", "traffic"), ("latency", "latency")])
    service = forms.CharField(max_length=128)
    endpoint = forms.CharField(required=False, max_length=512)
    method = forms.CharField(required=False, max_length=16)

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("endpoint")) != bool(cleaned.get("method")):
            self.add_error("method", "An endpoint's charts need both endpoint and method.")
        return cleaned


@project_page
def charts_fragment(request, page: Page):
    """The time-series charts of a service or endpoint (htmx fragment): traffic and
    error rate (one query without sketches), or latency and Apdex (the time series)."""
    data = check(ChartsForm(request.GET))
    part = data.pop("part")
    filters = {name: value for name, value in data.items() if value}
    if "method" in filters:
        filters["method"] = filters["method"].upper()
    query, interval = page.kpi(**filters), page.scope.interval
    if part == "traffic":
        columns = charts.traffic_columns(query.traffic_by("status_class", interval))
    else:
        columns = charts.kpi_columns(query.timeseries(interval))
    context = page.context(chart_data=columns, placeholder=False)
    return render(request, f"ui/_charts_{part}.html", context)


@project_page
def service(request, page: Page):
    data = check(ServiceForm(request.GET))
    context = page.context(
        service=data["service"],
        **_summary(page, service=data["service"]),
        **_endpoints(page, data),
    )
    return render(request, "ui/service.html", context)


@project_page
def service_endpoints(request, page: Page):
    """The service's endpoints table, re-sorted (htmx fragment)."""
    data = check(ServiceForm(request.GET))
    context = page.context(service=data["service"], **_endpoints(page, data))
    return render(request, "ui/_endpoints_table.html", context)


def _endpoints(page: Page, data: dict) -> dict:
    sort = data.get("sort") or "hits"
    rows = page.kpi(service=data["service"]).top_endpoints(
        sort, ENDPOINTS_SHOWN, settings.APM_TOP_MIN_HITS
    )
    return {
        "endpoints": rows,
        "sort": sort,
        "min_hits": settings.APM_TOP_MIN_HITS,
        "endpoint_columns": ENDPOINT_COLUMNS,
    }


@project_page
def endpoint(request, page: Page):
    data = check(EndpointForm(request.GET))
    data["method"] = data["method"].upper()
    context = page.context(
        **data,
        **_summary(page, **data),
        **_recent(page, data),
    )
    return render(request, "ui/endpoint.html", context)


def _recent(page: Page, data: dict) -> dict:
    """Status codes, the slowest and the failed among the endpoint's newest requests in
    range: a sample bounded in rows, so that the page costs the same on any range."""
    window = page.scope.window
    rows = ApiRequest.objects.using(page.database.alias).filter(
        project_id=page.project.pk, time__gte=window.start, time__lt=window.end, **data
    )
    if page.scope.environment:
        rows = rows.filter(environment=page.scope.environment)
    sample = list(
        rows.order_by("-time").values(
            "event_id", "time", "status_code", "latency_ms", "error_message", "host"
        )[:RECENT_SAMPLE]
    )
    codes = Counter(row["status_code"] for row in sample)
    return {
        "sample_size": len(sample),
        "sample_limit": RECENT_SAMPLE,
        "status_codes": sorted(codes.items()),
        "slowest": sorted(sample, key=lambda row: -row["latency_ms"])[:RECENT_SHOWN],
        "failed": [row for row in sample if row["status_code"] >= 500][:RECENT_SHOWN],
    }
