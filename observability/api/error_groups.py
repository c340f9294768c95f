"""Error groups (`/api/v1/error-groups/`): failed requests grouped by fingerprint
(observability/error_groups/), with their counts, timeline, endpoints and samples."""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.response import Response

from observability.api.errors import ErrorSerializer
from observability.api.listing import (
    ProjectScopedMixin,
    StrictCursorPagination,
    StrictOrderingFilter,
)
from observability.api.params import IsoDateTimeFilter, WindowForm
from observability.api.requests import ApiRequestSerializer
from observability.api.schema import ERROR_RESPONSES
from observability.models import ApiRequest, ErrorGroup, ErrorGroupEndpoint, ErrorGroupHour

SAMPLES = 10
ENDPOINTS = 50
DEFAULT_TIMELINE = timedelta(days=7)
MAX_TIMELINE = timedelta(days=31)  # 744 hourly points


class ErrorGroupSerializer(serializers.ModelSerializer):
    window_count = serializers.IntegerField(
        read_only=True,
        help_text="Occurrences in the hours that overlap the window (`from`, `to`); the "
        "lifetime count without a window.",
    )

    class Meta:
        model = ErrorGroup
        fields = [
            "id", "title", "status", "service", "endpoint", "exception_type", "kind",
            "count", "window_count", "first_seen", "last_seen", "resolved_at", "reopened_at",
            "times_reopened", "fingerprint", "version",
        ]  # fmt: skip
        extra_kwargs = {
            "title": {"help_text": "A real message of the group (one occurrence's)."},
            "endpoint": {"help_text": "The endpoint when it is part of the fingerprint, "
                                      "else '' (see `endpoints` in the detail)."},
            "kind": {"help_text": "What the fingerprint was made of: client, stack, "
                                  "exception, message or status."},
            "count": {"help_text": "Occurrences since the group was first seen."},
            "reopened_at": {"help_text": "Last time a resolved group was seen again."},
            "version": {"help_text": "Version of the fingerprint algorithm."},
        }  # fmt: skip


class HourSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField(help_text="Start of the UTC hour.")
    count = serializers.IntegerField()


class GroupEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = ErrorGroupEndpoint
        fields = ["endpoint", "method", "count", "last_seen"]


class ErrorGroupDetailSerializer(ErrorGroupSerializer):
    stacktrace = serializers.CharField(help_text="One occurrence's stack trace, trimmed.")
    timeline = HourSerializer(many=True, help_text="Hours with occurrences in the window.")
    endpoints = GroupEndpointSerializer(many=True, help_text=f"Up to {ENDPOINTS}, most first.")
    samples = ApiRequestSerializer(
        many=True, help_text=f"The latest {SAMPLES} stored requests (raw retention)."
    )

    class Meta(ErrorGroupSerializer.Meta):
        fields = [*ErrorGroupSerializer.Meta.fields, "stacktrace", "timeline", "endpoints",
                  "samples"]  # fmt: skip


class StatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ErrorGroup
        fields = ["status"]
        extra_kwargs = {"status": {"required": True}}

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field; only `status` can be changed."] for name in unknown}
            )
        return attrs

    def update(self, group: ErrorGroup, validated_data: dict) -> ErrorGroup:
        status = validated_data["status"]
        with transaction.atomic():
            # Ingest counts the group under the same lock (error_groups/store.py).
            group = ErrorGroup.objects.select_for_update().get(pk=group.pk)
            group.status = status
            group.resolved_at = timezone.now() if status == ErrorGroup.Status.RESOLVED else None
            group.save(update_fields=["status", "resolved_at"])
        return group


class ErrorGroupFilter(django_filters.FilterSet):
    """Groups seen in the window (`from` inclusive, `to` exclusive)."""

    service = django_filters.CharFilter(help_text="Exact service name.")
    endpoint = django_filters.CharFilter(
        method="filter_endpoint", help_text="Groups seen on this endpoint (route template)."
    )
    status = django_filters.ChoiceFilter(choices=ErrorGroup.Status.choices)
    from_ = IsoDateTimeFilter(
        field_name="last_seen", lookup_expr="gte", help_text="Start of the window (ISO 8601)."
    )
    to = IsoDateTimeFilter(
        field_name="first_seen", lookup_expr="lt", help_text="End of the window (ISO 8601)."
    )

    class Meta:
        model = ErrorGroup
        fields: list[str] = []
        form = WindowForm

    def filter_endpoint(self, queryset, name, value):
        seen_on = ErrorGroupEndpoint.objects.filter(group=OuterRef("pk"), endpoint=value)
        return queryset.filter(Exists(seen_on))

    @property
    def qs(self):
        return with_window_count(super().qs, self.form.cleaned_data)


ErrorGroupFilter.base_filters["from"] = ErrorGroupFilter.base_filters.pop("from_")


def with_window_count(groups, window: dict):
    """`window_count`: the group's occurrences in the hours overlapping the window."""
    start, end = window.get("from"), window.get("to")
    if start is None and end is None:
        return groups.annotate(window_count=F("count"))
    hours = ErrorGroupHour.objects.filter(group=OuterRef("pk"))
    if start is not None:
        hours = hours.filter(bucket__gte=_hour_of(start))
    if end is not None:
        hours = hours.filter(bucket__lt=end)
    total = hours.values("group").annotate(total=Sum("count")).values("total")
    return groups.annotate(window_count=Coalesce(Subquery(total), 0))


class ErrorGroupPagination(StrictCursorPagination):
    ordering = ("-last_seen", "-id")
    page_size = 50


TIMELINE_PARAMETERS = [
    OpenApiParameter(
        "from", OpenApiTypes.DATETIME, description="Timeline start; default 7 days before `to`."
    ),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="Timeline end; default now."),
]


@extend_schema_view(
    list=extend_schema(
        summary="List error groups",
        description="Failed requests (5xx, or an exception) grouped by fingerprint; see "
        "docs/ERRORS.md. Default order: last seen, newest first.",
        responses={200: ErrorGroupSerializer(many=True), **ERROR_RESPONSES},
    ),
    retrieve=extend_schema(
        summary="Get one error group with its timeline, endpoints and samples",
        parameters=TIMELINE_PARAMETERS,
        responses={200: ErrorGroupDetailSerializer, 404: ErrorSerializer, **ERROR_RESPONSES},
    ),
    partial_update=extend_schema(
        summary="Resolve, ignore or reopen an error group (admin scope)",
        description="A resolved group that occurs again (a request later than the "
        "resolution) is reopened by ingest: a regression.",
        request=StatusChangeSerializer,
        responses={200: ErrorGroupSerializer, 404: ErrorSerializer, **ERROR_RESPONSES},
    ),
)
class ErrorGroupViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    # A group exists once its first request is stored (count 0 only when that request
    # turned out unstorable).
    queryset = ErrorGroup.objects.filter(count__gt=0)
    serializer_class = ErrorGroupSerializer
    filterset_class = ErrorGroupFilter
    # Filters first: they add the window_count that ordering may sort by.
    filter_backends = [*viewsets.GenericViewSet.filter_backends, StrictOrderingFilter]
    ordering_fields = ["count", "window_count", "last_seen", "first_seen"]
    ordering_tie_breaker = "id"
    pagination_class = ErrorGroupPagination
    http_method_names = ["get", "patch", "head", "options"]

    def retrieve(self, request, *args, **kwargs):
        group = self.get_object()
        group.timeline = _timeline(group, *_timeline_window(request.query_params))
        group.window_count = sum(hour["count"] for hour in group.timeline)
        group.endpoints = ErrorGroupEndpoint.objects.filter(group=group).order_by(
            "-count", "endpoint", "method"
        )[:ENDPOINTS]
        group.samples = ApiRequest.objects.filter(
            project_id=group.project_id, error_group_id=group.pk
        ).order_by("-time")[:SAMPLES]
        return Response(ErrorGroupDetailSerializer(group).data)

    def partial_update(self, request, *args, **kwargs):
        change = StatusChangeSerializer(self.get_object(), data=request.data)
        change.is_valid(raise_exception=True)
        group = change.save()
        group.window_count = group.count
        return Response(ErrorGroupSerializer(group).data)


def _timeline_window(query_params):
    form = ErrorGroupFilter(query_params, queryset=ErrorGroup.objects.none()).form
    if not form.is_valid():
        raise exceptions.ValidationError(form.errors)
    end = form.cleaned_data.get("to") or timezone.now()
    start = form.cleaned_data.get("from") or end - DEFAULT_TIMELINE
    if end - start > MAX_TIMELINE:
        raise exceptions.ValidationError({"from": [f"The timeline may span at most "
                                                   f"{MAX_TIMELINE.days} days."]})  # fmt: skip
    return start, end


def _timeline(group: ErrorGroup, start, end) -> list[dict]:
    hours = ErrorGroupHour.objects.filter(group=group, bucket__gte=_hour_of(start), bucket__lt=end)
    return list(hours.order_by("bucket").values("bucket", "count"))


def _hour_of(moment):
    """The start of the UTC hour holding `moment` (the window's first hourly bucket)."""
    return moment.replace(minute=0, second=0, microsecond=0)
