"""The two ingest doors: REST batches (`/api/v1/ingest/`) and OTLP/HTTP (`/v1/traces`).

Both hand the request to the one ingest pipeline (observability.ingest.pipeline) and
answer in their own format.
"""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, OpenApiTypes, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from observability.api.errors import ErrorSerializer
from observability.api.requests import EventSerializer
from observability.api.schema import ERROR_RESPONSES
from observability.ingest import otlp, pipeline
from observability.models import ApiKey

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER,
    description="Retry safely: a request with the key and body of an earlier one (within "
    "APM_IDEMPOTENCY_TTL_HOURS) is answered with the earlier result and stores nothing.",
)  # fmt: skip
IN_USE = "The first request with this Idempotency-Key is still being processed."
REUSED = "This Idempotency-Key was used for a request with another body."


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Valid events, stored now or already stored.")
    duplicates = serializers.IntegerField(help_text="Accepted events whose event_id was stored.")
    rejected = serializers.IntegerField(help_text="Invalid events (non-strict mode only).")
    overflowed = serializers.IntegerField(help_text="Events moved to the overflow endpoint.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text='Reasons by event and field, e.g. "events[3].status_code".',
    )


class IngestView(APIView):
    """Batch ingest: a JSON array of events, or {"events": [...]}, optionally gzipped.

    Strict by default: one invalid event rejects the batch (400) and nothing is stored.
    With `?strict=false` valid events are stored and invalid ones listed. Idempotent on
    `event_id` + `time`; the answer comes only after the events are committed.
    """

    required_scope = ApiKey.SCOPE_INGEST
    parser_classes: list = []  # the body is read and decoded by the ingest pipeline

    @extend_schema(
        summary="Ingest a batch of request events",
        request={"application/json": EventSerializer(many=True)},
        parameters=[
            OpenApiParameter("strict", OpenApiTypes.BOOL, description="Default true."),
            IDEMPOTENCY_KEY,
        ],
        responses={
            200: IngestResultSerializer,
            409: OpenApiResponse(ErrorSerializer, description=IN_USE),
            413: OpenApiResponse(ErrorSerializer, description="Too many events or bytes."),
            415: OpenApiResponse(ErrorSerializer, description="Not JSON, or unknown encoding."),
            422: OpenApiResponse(ErrorSerializer, description=REUSED),
            429: OpenApiResponse(ErrorSerializer, description="Rate limit; see Retry-After."),
            **ERROR_RESPONSES,
        },
    )
    def post(self, request):
        strict = _strict_flag(request)
        result = pipeline.ingest(request._request, pipeline.REST, request.auth, strict=strict)
        # The counts only: a serializer bound to the result would keep its stored rows
        # alive with the response, in the reference cycles only the collector frees.
        return Response(IngestResultSerializer(result.as_dict()).data)


def _strict_flag(request) -> bool:
    raw = request.query_params.get("strict", "true").lower()
    if raw not in ("true", "false", "1", "0"):
        raise exceptions.ValidationError({"strict": ["Must be true or false."]})
    return raw in ("true", "1")


# google.rpc.Code for the HTTP statuses we answer with (OTLP error bodies carry one).
RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 429: 8, 503: 14}


class OtlpTracesView(APIView):
    """OTLP/HTTP trace receiver (`/v1/traces`): protobuf or JSON, optionally gzipped.

    SERVER spans become request records; other span kinds are skipped. Answers with an
    ExportTraceServiceResponse (partial_success lists rejected spans), errors with a
    google.rpc.Status, both in the request's encoding, as the OTLP/HTTP spec says.
    """

    required_scope = ApiKey.SCOPE_INGEST
    parser_classes: list = []

    @extend_schema(
        summary="OTLP/HTTP trace export",
        request={otlp.PROTOBUF: OpenApiTypes.BINARY, otlp.JSON: OpenApiTypes.OBJECT},
        parameters=[IDEMPOTENCY_KEY],
        responses={
            (200, otlp.PROTOBUF): OpenApiResponse(
                OpenApiTypes.BINARY, description="ExportTraceServiceResponse"
            ),
            (200, otlp.JSON): OpenApiResponse(
                OpenApiTypes.OBJECT, description="ExportTraceServiceResponse"
            ),
            (400, otlp.PROTOBUF): OpenApiResponse(
                OpenApiTypes.BINARY, description="google.rpc.Status (any 4xx/5xx)"
            ),
            (400, otlp.JSON): OpenApiResponse(
                OpenApiTypes.OBJECT, description="google.rpc.Status (any 4xx/5xx)"
            ),
        },
        tags=["otlp"],
    )
    def post(self, request):
        # OTLP has no strict mode: rejected spans are reported in partial_success.
        result = pipeline.ingest(request._request, pipeline.OTLP, request.auth, strict=False)
        content_type = self._content_type(request)
        return HttpResponse(
            otlp.encode_response(content_type, result.rejected, _partial_success_message(result)),
            content_type=content_type,
        )

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        content_type = self._content_type(self.request)
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        errors = response.data.get("errors") if isinstance(response.data, dict) else None
        if errors:
            detail = f"{detail} " + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        status_body = otlp.encode_status(
            content_type, RPC_CODES.get(response.status_code, 13), detail
        )
        error = HttpResponse(status_body, status=response.status_code, content_type=content_type)
        for header in ("Retry-After", "WWW-Authenticate"):
            if header in response:
                error[header] = response[header]
        return error

    @staticmethod
    def _content_type(request) -> str:
        return otlp.JSON if request.content_type == otlp.JSON else otlp.PROTOBUF


def _partial_success_message(result: pipeline.IngestResult) -> str:
    parts = []
    if result.errors:
        shown = list(result.errors.items())[:10]
        parts.append(
            "; ".join(f"{k.replace('events', 'spans', 1)}: {' '.join(v)}" for k, v in shown)
        )
    if result.skipped:
        parts.append(f"{result.skipped} non-SERVER span(s) skipped (not HTTP requests served).")
    return " ".join(parts)
