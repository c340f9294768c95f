"""REST API views. Thin: authenticate, parse, query, serialize."""

from __future__ import annotations

import psycopg
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.pagination import CursorPagination

from observability.filters import RequestFilter, StrictOrderingFilter
from observability.guards import ErrorSerializer
from observability.models import ApiRequest
from observability.serializers import ApiRequestSerializer

ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid parameters or fields."),
    401: OpenApiResponse(ErrorSerializer, description="Missing, invalid or revoked API key."),
    403: OpenApiResponse(ErrorSerializer, description="The API key lacks the needed scope."),
    503: OpenApiResponse(ErrorSerializer, description="Database unavailable; see Retry-After."),
}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "duplicate"
    default_detail = "A request with this event_id and time is already stored."


class NewestFirstCursorPagination(CursorPagination):
    ordering = ("-time", "-id")
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
    lookup_value_regex = r"\d+"

    def perform_create(self, serializer):
        try:
            with transaction.atomic():
                serializer.save(project_id=self.request.auth.project_id)
        except IntegrityError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise Conflict() from exc
            raise
