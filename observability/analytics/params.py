"""Validated parameters of the analytics endpoints (window, filters, interval, ranking).

The window and dimension filters are those of the request list (filters.RequestFilter),
so both APIs accept and reject exactly the same values. Every rejection is a 400 that
names the parameter.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions

from observability.analytics.queries import INTERVALS, Filters
from observability.filters import RequestFilter
from observability.models import ApiRequest

DEFAULT_WINDOW = timedelta(hours=24)
# Filters of the request list that rollups cannot answer.
UNSUPPORTED = ("status_code", "min_latency_ms", "max_latency_ms")
RANKINGS = ("hits", "errors", "error_rate", "p95", "p99", "apdex")


@dataclasses.dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def window_and_filters(query_params) -> tuple[Window, Filters]:
    filterset = RequestFilter(query_params, queryset=ApiRequest.objects.none())
    form = filterset.form
    if not form.is_valid():
        raise exceptions.ValidationError(form.errors)
    data = form.cleaned_data
    unsupported = [name for name in UNSUPPORTED if data.get(name) is not None]
    if unsupported:
        raise exceptions.ValidationError({
            name: ["Not available for KPIs (rollups keep status classes, not codes or latencies)."]
            for name in unsupported
        })  # fmt: skip
    end = data.get("to") or timezone.now()
    start = data.get("from") or end - DEFAULT_WINDOW
    if start >= end:
        raise exceptions.ValidationError({"from": ["Must be earlier than `to`."]})
    if end - start > timedelta(days=settings.APM_MAX_WINDOW_DAYS):
        raise exceptions.ValidationError(
            {"from": [f"The window may span at most {settings.APM_MAX_WINDOW_DAYS} days."]}
        )
    status_class = data.get("status_class")
    filters = Filters(
        service=data.get("service") or None,
        endpoint=data.get("endpoint") or None,
        method=data["method"].upper() if data.get("method") else None,
        status_class=int(status_class[0]) if status_class else None,
        environment=data.get("environment") or None,
    )
    return Window(start.astimezone(UTC), end.astimezone(UTC)), filters


def interval(query_params, window: Window) -> str:
    value = query_params.get("interval", "hour")
    if value not in INTERVALS:
        raise exceptions.ValidationError(
            {"interval": [f"Unknown interval {value!r}; use {', '.join(INTERVALS)}."]}
        )
    points = window.seconds / INTERVALS[value].total_seconds()
    if points > settings.APM_MAX_POINTS:
        raise exceptions.ValidationError({"interval": [
            f"{int(points)} points; at most {settings.APM_MAX_POINTS}: use a coarser interval "
            "or a shorter window."
        ]})  # fmt: skip
    return value


def ranking(query_params) -> tuple[str, int]:
    by = query_params.get("by", "hits")
    if by not in RANKINGS:
        raise exceptions.ValidationError(
            {"by": [f"Unknown ranking {by!r}; use {', '.join(RANKINGS)}."]}
        )
    raw_limit = query_params.get("limit", "10")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        raise exceptions.ValidationError({"limit": ["Must be an integer from 1 to 100."]})
    return by, int(raw_limit)
