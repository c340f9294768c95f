"""Request records (`/api/v1/requests/`) and the endpoints ingest admitted (`/endpoints/`)."""

from __future__ import annotations

import uuid

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.response import Response

from observability.api.errors import Conflict, ErrorSerializer
from observability.api.listing import (
    ProjectScopedMixin,
    StrictCursorPagination,
    StrictOrderingFilter,
)
from observability.api.params import RequestFilter
from observability.api.schema import ERROR_RESPONSES
from observability.ingest import cardinality, events, pipeline
from observability.models import ApiRequest, Dimension, DimensionValue


class ApiRequestSerializer(serializers.ModelSerializer):
    """A stored request record, as the API answers it."""

    status_class = serializers.CharField(read_only=True)

    class Meta:
        model = ApiRequest
        fields = [
            "event_id",
            "time",
            "service",
            "endpoint",
            "method",
            "status_code",
            "status_class",
            "latency_ms",
            "trace_id",
            "span_id",
            "environment",
            "host",
            "error_message",
            "request_bytes",
            "response_bytes",
            "attributes",
        ]


class EventSerializer(serializers.Serializer):
    """An event as ingest accepts it (the request body of ingest and of the single create;
    for the schema: the ingest pipeline validates, with the same rules)."""

    time = serializers.CharField(
        help_text="RFC 3339 date-time (UTC if no offset), or epoch milliseconds; within the "
        "raw retention and at most 5 minutes ahead."
    )
    service = serializers.CharField(min_length=1, max_length=128)
    endpoint = serializers.CharField(
        required=False, min_length=1, max_length=events.MAX_ENDPOINT_CHARS,
        help_text="Route template, e.g. /users/{id}. Either endpoint or path.",
    )  # fmt: skip
    path = serializers.CharField(
        required=False, min_length=1, max_length=2048,
        help_text="Raw path, normalised to a route (/users/42 -> /users/{id}).",
    )  # fmt: skip
    method = serializers.RegexField(
        r"^([A-Za-z]{1,16}|_OTHER)$",
        help_text="HTTP method, any case. Methods other than the standard ones are stored "
        f"as _OTHER, the original kept in attributes.{events.ORIGINAL_METHOD_KEY}.",
    )
    status_code = serializers.IntegerField(min_value=100, max_value=599)
    latency_ms = serializers.FloatField(min_value=0, max_value=events.MAX_LATENCY_MS)
    event_id = serializers.UUIDField(
        required=False, help_text="Idempotency key within the project (with time)."
    )
    trace_id = serializers.RegexField(r"^[0-9a-fA-F]{32}$", required=False)
    span_id = serializers.RegexField(r"^[0-9a-fA-F]{16}$", required=False)
    environment = serializers.CharField(required=False, max_length=64)
    host = serializers.CharField(required=False, max_length=255)
    error_message = serializers.CharField(
        required=False, help_text=f"At most {events.MAX_ERROR_MESSAGE_BYTES} bytes of UTF-8."
    )
    request_bytes = serializers.IntegerField(
        required=False, min_value=0, max_value=events.MAX_BIGINT
    )
    response_bytes = serializers.IntegerField(
        required=False, min_value=0, max_value=events.MAX_BIGINT
    )
    attributes = serializers.DictField(
        required=False,
        help_text=f"A JSON object: at most {events.MAX_ATTRIBUTES_BYTES} bytes, "
        f"{events.MAX_ATTRIBUTES} keys, {events.MAX_ATTRIBUTE_DEPTH} levels of nesting.",
    )


class EndpointSerializer(serializers.ModelSerializer):
    service = serializers.CharField(source="scope")
    endpoint = serializers.CharField(source="value")

    class Meta:
        model = DimensionValue
        fields = ["service", "endpoint", "first_seen"]


class NewestFirstCursorPagination(StrictCursorPagination):
    ordering = ("-time", "-event_id")
    page_size = 100


@extend_schema_view(
    list=extend_schema(
        summary="List requests, newest first",
        responses={200: ApiRequestSerializer(many=True), **ERROR_RESPONSES},
    ),
    retrieve=extend_schema(
        summary="Get one request",
        responses={200: ApiRequestSerializer, 404: ErrorSerializer, **ERROR_RESPONSES},
    ),
    create=extend_schema(
        summary="Store one request",
        description="The same pipeline and rules as batch ingest (path normalisation, "
        "cardinality caps), for one record; 409 if this project has its event_id + time.",
        request=EventSerializer,
        responses={201: ApiRequestSerializer, 409: ErrorSerializer, **ERROR_RESPONSES},
    ),
    destroy=extend_schema(
        summary="Delete one request", responses={204: None, 404: ErrorSerializer, **ERROR_RESPONSES}
    ),
)
class ApiRequestViewSet(
    ProjectScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Request records of the API key's project. Times are returned in UTC."""

    queryset = ApiRequest.objects.all()
    serializer_class = ApiRequestSerializer
    filterset_class = RequestFilter
    filter_backends = [StrictOrderingFilter, *viewsets.GenericViewSet.filter_backends]
    ordering_fields = ["time"]
    ordering_tie_breaker = "event_id"
    pagination_class = NewestFirstCursorPagination
    lookup_field = "event_id"
    lookup_value_regex = r"[0-9a-fA-F-]{32,36}"

    def get_object(self):
        # (project, event_id, time) is the key; a client that reused an event_id at another
        # time has several rows: the newest one answers (never a 500 for MultipleObjects).
        try:
            event_id = uuid.UUID(self.kwargs["event_id"])
        except ValueError as exc:
            raise exceptions.NotFound() from exc
        row = self.get_queryset().filter(event_id=event_id).order_by("-time").first()
        if row is None:
            raise exceptions.NotFound()
        return row

    def create(self, request, *args, **kwargs):
        result = pipeline.ingest(request._request, pipeline.RECORD, request.auth, strict=True)
        if result.duplicates:
            raise Conflict()
        (row,) = result.rows
        record = self.get_queryset().get(pk=(row.project_id, row.event_id, row.time))
        return Response(self.get_serializer(record).data, status=status.HTTP_201_CREATED)


class EndpointPagination(StrictCursorPagination):
    ordering = ("scope", "value")
    page_size = 200


class EndpointFilter(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="scope")

    class Meta:
        model = DimensionValue
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(
        summary="Endpoints seen per service",
        description=(
            "The endpoints ingest has admitted, by service. At most "
            "APM_ENDPOINT_CARDINALITY_CAP per service; events for further endpoints are "
            f"stored under `{cardinality.OVERFLOW}`."
        ),
        parameters=[OpenApiParameter("service", str, description="Only this service.")],
        responses={200: EndpointSerializer(many=True), **ERROR_RESPONSES},
    )
)
class EndpointViewSet(ProjectScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = DimensionValue.objects.filter(dimension=Dimension.ENDPOINT)
    serializer_class = EndpointSerializer
    pagination_class = EndpointPagination
    filterset_class = EndpointFilter
