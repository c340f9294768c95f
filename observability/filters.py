"""Query filters shared by the request list and the analytics endpoints."""

from __future__ import annotations

import re

import django_filters
from django import forms
from rest_framework import exceptions
from rest_framework.filters import OrderingFilter

from observability.models import ApiRequest, StatusClass

# "2026-01-01T10:00:00+02:00" arrives as "...10:00:00 02:00" when the client did not
# URL-encode the plus sign; restore it instead of rejecting the date.
_UNENCODED_OFFSET = re.compile(r"^(\S+T\S+) (\d{2}(:?\d{2})?)$")


class LenientIsoDateTimeField(forms.DateTimeField):
    """ISO 8601 with any UTC offset (or Z); naive values are taken as UTC."""

    def to_python(self, value):
        if isinstance(value, str):
            value = _UNENCODED_OFFSET.sub(r"\1+\2", value.strip())
        return super().to_python(value)


class IsoDateTimeFilter(django_filters.DateTimeFilter):
    field_class = LenientIsoDateTimeField


class WindowForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
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


class StrictOrderingFilter(OrderingFilter):
    """OrderingFilter that rejects unknown fields with a 400 instead of ignoring them."""

    def get_ordering(self, request, queryset, view):
        params = request.query_params.get(self.ordering_param)
        if params:
            fields = [param.strip() for param in params.split(",")]
            allowed = {f for f in view.ordering_fields} | {f"-{f}" for f in view.ordering_fields}
            unknown = [field for field in fields if field not in allowed]
            if unknown:
                reason = (
                    f"Unknown ordering {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}."
                )
                raise exceptions.ValidationError({self.ordering_param: [reason]})
        ordering = super().get_ordering(request, queryset, view)
        # A unique tie-breaker keeps cursor pages stable when times are equal.
        tie_breaker = "-event_id" if ordering and ordering[0].startswith("-") else "event_id"
        return (*ordering, tie_breaker) if ordering else ordering
