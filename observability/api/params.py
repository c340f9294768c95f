"""Query parameters shared by the request list, the analytics and the search endpoints.

The window (`from`, `to`) and dimension filters are one FilterSet, so every endpoint
accepts and rejects exactly the same values. Every rejection is a 400 naming the
parameter.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import django_filters
from django import forms
from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions

from observability.analytics.queries import INTERVALS, RANKINGS, Filters, Window
from observability.models import ApiRequest, StatusClass

# "2026-01-01T10:00:00+02:00" arrives as "...10:00:00 02:00" when the client did not
# URL-encode the plus sign; restore it instead of rejecting the date.
_UNENCODED_OFFSET = re.compile(r"^(\S+T\S+) (\d{2}(:?\d{2})?)$")
# Times a window may name: far beyond any data, and far enough from the ends of the
# calendar that window arithmetic (a default start, bucket ends) cannot overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
DEFAULT_WINDOW = timedelta(hours=24)
# Filters of the request list that rollups cannot answer.
NOT_IN_ROLLUPS = ("status_code", "min_latency_ms", "max_latency_ms")


class LenientIsoDateTimeField(forms.DateTimeField):
    """ISO 8601 with any UTC offset (or Z); naive values are taken as UTC. Always UTC,
    between EARLIEST and LATEST."""

    def to_python(self, value):
        if isinstance(value, str):
            value = _UNENCODED_OFFSET.sub(r"\1+\2", value.strip())
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            moment = moment.astimezone(UTC)
        except OverflowError as exc:  # e.g. 9999-12-31T23:00-05:00 is past year 9999
            raise forms.ValidationError(self.out_of_range) from exc
        if not EARLIEST <= moment <= LATEST:
            raise forms.ValidationError(self.out_of_range)
        return moment

    out_of_range = f"Must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)."


class IsoDateTimeFilter(django_filters.DateTimeFilter):
    field_class = LenientIsoDateTimeField


class WindowForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        for name in self.fields:
            if self.data.get(name) == "":  # `to=`: a mistake, never "no filter"
                self.add_error(name, "Must not be empty.")
        start, end = cleaned.get("from"), cleaned.get("to")
        if start and end and start >= end:
            self.add_error("from", "Must be earlier than `to`.")
        return cleaned


class RequestFilter(django_filters.FilterSet):
    """Dimensions and time window; `from` is inclusive, `to` exclusive."""

    service = django_filters.CharFilter(help_text="Exact service name.")
    endpoint = django_filters.CharFilter(help_text="Exact endpoint (route template).")
    method = django_filters.CharFilter(method="filter_method", help_text="HTTP method, any case.")
    status_code = django_filters.NumberFilter(min_value=100, max_value=599)
    status_class = django_filters.ChoiceFilter(
        choices=StatusClass.choices, method="filter_status_class", help_text="Status class."
    )
    environment = django_filters.CharFilter()
    from_ = IsoDateTimeFilter(
        field_name="time", lookup_expr="gte", help_text="Start of the window (ISO 8601, inclusive)."
    )
    to = IsoDateTimeFilter(
        field_name="time", lookup_expr="lt", help_text="End of the window (ISO 8601, exclusive)."
    )
    min_latency_ms = django_filters.NumberFilter(
        field_name="latency_ms", lookup_expr="gte", min_value=0
    )
    max_latency_ms = django_filters.NumberFilter(
        field_name="latency_ms", lookup_expr="lte", min_value=0
    )

    class Meta:
        model = ApiRequest
        fields: list[str] = []
        form = WindowForm

    def filter_method(self, queryset, name, value):
        return queryset.filter(method=value.upper())

    def filter_status_class(self, queryset, name, value):
        low, high = StatusClass(value).status_range
        return queryset.filter(status_code__gte=low, status_code__lt=high)


# `from` is a Python keyword, so the filter is declared as `from_` and renamed here.
RequestFilter.base_filters["from"] = RequestFilter.base_filters.pop("from_")


def window_and_filters(query_params) -> tuple[Window, Filters]:
    """The analytics window (default: the last 24 h) and the dimension filters."""
    filterset = RequestFilter(query_params, queryset=ApiRequest.objects.none())
    form = filterset.form
    if not form.is_valid():
        raise exceptions.ValidationError(form.errors)
    data = form.cleaned_data
    unsupported = [name for name in NOT_IN_ROLLUPS if data.get(name) is not None]
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


def ranking(query_params) -> str:
    by = query_params.get("by", "hits")
    if by not in RANKINGS:
        raise exceptions.ValidationError(
            {"by": [f"Unknown ranking {by!r}; use {', '.join(RANKINGS)}."]}
        )
    return by


def limit(query_params, default: int = 10, maximum: int = 100) -> int:
    raw = query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise exceptions.ValidationError({"limit": [f"Must be an integer from 1 to {maximum}."]})
    return int(raw)
