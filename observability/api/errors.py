"""One error shape for every API error, and what the domain's refusals answer.

Every error body is `{"code": ..., "detail": ...}`; validation errors add
`"errors": {"<parameter or field>": ["<reason>", ...]}`. A database outage is a 503 with
Retry-After; the ingest pipeline's refusals (observability.ingest.errors) get their
statuses here.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from psycopg.errors import QueryCanceled
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apm_platform import db_routing
from apm_platform.telemetry import DB_ERRORS
from observability.ingest import errors as ingest_errors
from observability.ingest import idempotency

logger = logging.getLogger(__name__)

# How long a client should wait before retrying while the database is unavailable.
DATABASE_RETRY_AFTER_S = 5


class ErrorSerializer(serializers.Serializer):
    """The body of every 4xx/5xx answer (documented in the OpenAPI schema)."""

    code = serializers.CharField(help_text="Machine-readable error code.")
    detail = serializers.CharField(help_text="Human-readable explanation.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For validation errors: the reasons, keyed by parameter or field name.",
    )


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; retry later."
    default_code = "database_unavailable"


class QueryTimeout(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "query_timeout"

    def __init__(self):
        super().__init__(
            f"The query ran longer than the API's limit of {settings.APM_API_STATEMENT_TIMEOUT_MS}"
            " ms (APM_API_STATEMENT_TIMEOUT_MS): narrow the window or the filters."
        )


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "duplicate"
    default_detail = "A request with this event_id and time is already stored."


class IdempotencyKeyInUse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_key_in_use"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is too large."


class UnsupportedEncoding(exceptions.APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "unsupported_encoding"
    default_detail = "Unsupported Content-Encoding: send identity or gzip."


def api_error(exc: ingest_errors.IngestRejected) -> exceptions.APIException:
    """The HTTP answer to a refusal of the ingest pipeline."""
    match exc:
        case ingest_errors.PayloadTooLarge():
            return PayloadTooLarge(exc.detail)
        case ingest_errors.UnsupportedMediaType():
            return exceptions.UnsupportedMediaType("", detail=exc.detail)
        case ingest_errors.UnsupportedEncoding():
            return UnsupportedEncoding(exc.detail)
        case ingest_errors.RateLimited():
            return exceptions.Throttled(wait=exc.wait_s, detail=exc.detail)
        case ingest_errors.EmptyBatch():
            return exceptions.ValidationError({"events": [exc.detail]})
        case ingest_errors.InvalidEvents():
            return exceptions.ValidationError(exc.errors)
        case idempotency.KeyInUse():
            return IdempotencyKeyInUse(exc.detail)
        case idempotency.KeyReused():
            return IdempotencyKeyReused(exc.detail)
    return exceptions.ParseError(exc.detail)  # MalformedBody


def api_exception_handler(exc, context):
    db_routing.note_database_error(exc)
    if isinstance(exc, OperationalError) and isinstance(exc.__cause__, QueryCanceled):
        return _error_response(QueryTimeout())
    if isinstance(exc, OperationalError | InterfaceError):
        view = context.get("view")
        DB_ERRORS.labels(type(view).__name__ if view else "unknown", type(exc).__name__).inc()
        logger.warning("database unavailable: %s", str(exc).strip().splitlines()[0])
        response = _error_response(DatabaseUnavailable())
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
    if isinstance(exc, ingest_errors.IngestRejected):
        exc = api_error(exc)
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling logs it
    response.data = _error_body(exc)
    return response


def _error_response(exc: exceptions.APIException) -> Response:
    return Response(_error_body(exc), status=exc.status_code)


def _error_body(exc: exceptions.APIException) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        return {
            "code": "invalid",
            "detail": "The request has invalid parameters or fields.",
            "errors": _flatten(exc.detail),
        }
    codes = exc.get_codes()
    return {"code": codes if isinstance(codes, str) else "error", "detail": str(exc.detail)}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """{"a": {"b": ["x"]}} -> {"a.b": ["x"]}; messages with no field go to non_field_errors."""
    nested = detail.items() if isinstance(detail, dict) else None
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        nested = enumerate(detail)
    if nested is None:
        messages = detail if isinstance(detail, list) else [detail]
        return {prefix or "non_field_errors": [str(message) for message in messages]}
    flat: dict[str, list[str]] = {}
    for key, value in nested:
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
