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


def _kpi_charts(page: Page, **filters) -> dict:
    """Cards, charts and latency distribution of one service or endpoint."""
    query = page.kpi(**filters)
    interval = page.scope.interval
    points = query.timeseries(interval)
    columns = charts.kpi_columns(points)
    traffic = charts.traffic_by_class(query.traffic_by("status_class", interval), columns["x"])
    return {
        "totals": query.totals(),
        "previous": page.kpi(window=page.scope.previous, **filters).totals(),
        "charts": {
            "traffic": traffic,
            "kpis": columns,
            "distribution": charts.distribution(query.distribution()),
        },
    }


@project_page
def service(request, page: Page):
    data = check(ServiceForm(request.GET))
    context = page.context(
        service=data["service"],
        **_kpi_charts(page, service=data["service"]),
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
        **_kpi_charts(page, **data),
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
