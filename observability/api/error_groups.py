"""Error groups (`/api/v1/error-groups/`): failed requests grouped by fingerprint
(observability/error_groups/), with their counts, timeline, endpoints and samples."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.response import Response

from observability.api.errors import ErrorSerializer
from observability.api.listing import StrictCursorPagination, StrictOrderingFilter
from observability.api.params import IsoDateTimeFilter, WindowForm
from observability.api.requests import ApiRequestSerializer
from observability.api.schema import ERROR_RESPONSES
from observability.error_groups import queries
from observability.error_groups.queries import ENDPOINTS, SAMPLES
from observability.models import ErrorGroup, ErrorGroupEndpoint


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
        return queries.set_status(group, validated_data["status"])


class ErrorGroupFilter(django_filters.FilterSet):
    """Groups seen in the window (`from` inclusive, `to` exclusive)."""

    service = django_filters.CharFilter(help_text="Exact service name.")
    endpoint = django_filters.CharFilter(help_text="Groups seen on this endpoint (route template).")
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

    def filter_queryset(self, queryset):
        """The filters above document and check the parameters; the domain applies them."""
        data = self.form.cleaned_data
        return queries.seen(
            queryset,
            start=data.get("from"),
            end=data.get("to"),
            service=data.get("service"),
            endpoint=data.get("endpoint"),
            status=data.get("status"),
        )


ErrorGroupFilter.base_filters["from"] = ErrorGroupFilter.base_filters.pop("from_")


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
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ErrorGroup.objects.none()  # the model, for the schema; see get_queryset
    serializer_class = ErrorGroupSerializer
    filterset_class = ErrorGroupFilter
    # Filters first: they add the window_count that ordering may sort by.
    filter_backends = [*viewsets.GenericViewSet.filter_backends, StrictOrderingFilter]
    ordering_fields = list(queries.ORDERINGS)
    ordering_tie_breaker = "id"
    pagination_class = ErrorGroupPagination
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        """Every query is limited to the project of the authenticating API key."""
        return queries.of_project(self.request.auth.project_id)

    def retrieve(self, request, *args, **kwargs):
        group = self.get_object()
        group.timeline = queries.timeline(group, *_timeline_window(request.query_params))
        group.window_count = sum(hour["count"] for hour in group.timeline)
        group.endpoints = queries.endpoints(group)
        group.samples = queries.samples(group)
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
    given = form.cleaned_data
    start, end = queries.default_timeline(given.get("from"), given.get("to"))
    if reason := queries.timeline_error(start, end):
        raise exceptions.ValidationError({"from": [reason]})
    return start, end
