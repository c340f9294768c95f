"""Request records (`/api/v1/requests/`) and the endpoints ingest admitted (`/endpoints/`)."""

from __future__ import annotations

import math
import re
import uuid
from datetime import timedelta

import orjson
import psycopg
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import CursorPagination

from observability.api.errors import Conflict, ErrorSerializer
from observability.api.params import RequestFilter
from observability.api.schema import ERROR_RESPONSES
from observability.ingest import endpoints
from observability.ingest.thresholds import apdex_thresholds
from observability.models import ApiRequest, Endpoint

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
METHOD = re.compile(r"^[A-Z]{1,16}$")
MAX_LATENCY_MS = 86_400_000
MAX_ERROR_MESSAGE_BYTES = 4096
MAX_ATTRIBUTES_BYTES = 8192
MAX_FUTURE = timedelta(minutes=5)


class ApiRequestSerializer(serializers.ModelSerializer):
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
        # No pre-insert uniqueness query: the database's (event_id, time) constraint
        # decides, and the view turns a violation into 409.
        validators = []
        extra_kwargs = {
            "event_id": {"required": False, "help_text": "Unique event id; generated when absent."},
            "request_bytes": {"min_value": 0},
            "response_bytes": {"min_value": 0},
        }

    def validate_time(self, value):
        now = timezone.now()
        if value > now + MAX_FUTURE:
            raise serializers.ValidationError("Is more than 5 minutes in the future.")
        if value < now - timedelta(days=settings.APM_RAW_RETENTION_DAYS):
            raise serializers.ValidationError(
                f"Is older than the raw retention ({settings.APM_RAW_RETENTION_DAYS} days)."
            )
        return value

    def validate_method(self, value: str) -> str:
        value = value.upper()
        if not METHOD.match(value):
            raise serializers.ValidationError("Must be an HTTP method such as GET or POST.")
        return value

    def validate_latency_ms(self, value: float) -> float:
        if not math.isfinite(value) or not 0 <= value <= MAX_LATENCY_MS:
            raise serializers.ValidationError(
                f"Must be a finite number from 0 to {MAX_LATENCY_MS}."
            )
        return value

    def validate_trace_id(self, value: str) -> str:
        if value and not HEX32.match(value.lower()):
            raise serializers.ValidationError("Must be 32 hexadecimal characters.")
        return value.lower()

    def validate_span_id(self, value: str) -> str:
        if value and not HEX16.match(value.lower()):
            raise serializers.ValidationError("Must be 16 hexadecimal characters.")
        return value.lower()

    def validate_error_message(self, value: str) -> str:
        if len(value.encode()) > MAX_ERROR_MESSAGE_BYTES:
            raise serializers.ValidationError(f"Must be at most {MAX_ERROR_MESSAGE_BYTES} bytes.")
        return value

    def validate_attributes(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        if len(orjson.dumps(value)) > MAX_ATTRIBUTES_BYTES:
            raise serializers.ValidationError(
                f"Must be at most {MAX_ATTRIBUTES_BYTES} bytes of JSON."
            )
        return value


class EndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Endpoint
        fields = ["service", "endpoint", "first_seen"]


class NewestFirstCursorPagination(CursorPagination):
    ordering = ("-time", "-event_id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound as exc:
            # DRF answers 404 for a bad cursor; it is a bad parameter.
            raise exceptions.ValidationError(
                {self.cursor_query_param: ["Invalid cursor."]}
            ) from exc


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


class ProjectScopedMixin:
    """Every query is limited to the project of the authenticating API key."""

    def get_queryset(self):
        return super().get_queryset().filter(project_id=self.request.auth.project_id)


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
    pagination_class = NewestFirstCursorPagination
    lookup_field = "event_id"
    lookup_value_regex = r"[0-9a-fA-F-]{32,36}"

    def get_object(self):
        # (event_id, time) is the key; a client that reused an event_id at another time
        # has several rows: the newest one answers (never a 500 for MultipleObjects).
        try:
            event_id = uuid.UUID(self.kwargs["event_id"])
        except ValueError as exc:
            raise exceptions.NotFound() from exc
        row = self.get_queryset().filter(event_id=event_id).order_by("-time").first()
        if row is None:
            raise exceptions.NotFound()
        return row

    def perform_create(self, serializer):
        project_id = self.request.auth.project_id
        service = serializer.validated_data["service"]
        threshold = apdex_thresholds(project_id, {service})[service]
        try:
            with transaction.atomic():
                serializer.save(project_id=project_id, apdex_t_ms=threshold)
        except IntegrityError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise Conflict() from exc
            raise


class EndpointPagination(CursorPagination):
    ordering = ("service", "endpoint")
    page_size = 200
    page_size_query_param = "page_size"
    max_page_size = 1000


@extend_schema_view(
    list=extend_schema(
        summary="Endpoints seen per service",
        description=(
            "The endpoints ingest has admitted, by service. At most "
            "APM_ENDPOINT_CARDINALITY_CAP per service; events for further endpoints are "
            f"stored under `{endpoints.OVERFLOW_ENDPOINT}`."
        ),
        parameters=[OpenApiParameter("service", str, description="Only this service.")],
        responses={200: EndpointSerializer(many=True), **ERROR_RESPONSES},
    )
)
class EndpointViewSet(ProjectScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    queryset = Endpoint.objects.all()
    serializer_class = EndpointSerializer
    pagination_class = EndpointPagination
    filterset_fields = ["service"]
