"""REST API views. Thin: authenticate, parse, query, serialize."""

from __future__ import annotations

import uuid

import psycopg
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    extend_schema,
    extend_schema_view,
)
from prometheus_client import Counter
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from apm_platform import db_router
from observability import ai
from observability.ai import search
from observability.analytics import params as analytics_params
from observability.analytics.queries import KpiQuery
from observability.filters import RequestFilter, StrictOrderingFilter
from observability.guards import ErrorSerializer
from observability.ingest import endpoints, otlp, pipeline, ratelimit
from observability.ingest.body import PayloadTooLarge, read_body
from observability.ingest.events import BodyError, decode_batch
from observability.ingest.thresholds import apdex_thresholds
from observability.models import ApiKey, ApiRequest, Endpoint
from observability.serializers import (
    ApiRequestSerializer,
    EndpointSerializer,
    KpiSerializer,
    ServiceKpiSerializer,
    TimeseriesPointSerializer,
    TopEndpointSerializer,
    results_of,
)

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
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter("strict", OpenApiTypes.BOOL, description="Default true."),
        ],
        responses={
            200: IngestResultSerializer,
            413: OpenApiResponse(ErrorSerializer, description="Too many events or bytes."),
            415: OpenApiResponse(ErrorSerializer, description="Not JSON, or unknown encoding."),
            429: OpenApiResponse(ErrorSerializer, description="Rate limit; see Retry-After."),
            **ERROR_RESPONSES,
        },
    )
    def post(self, request):
        strict = _strict_flag(request)
        body = read_body(request._request, settings.APM_INGEST_MAX_BYTES, ("application/json",))
        try:
            events = decode_batch(body)
        except BodyError as exc:
            raise exceptions.ParseError(str(exc)) from exc
        _check_batch_size(len(events))
        _take_rate_tokens(request.auth, len(events))
        result = pipeline.IngestResult()
        rows = pipeline.validate(enumerate(events), request.auth.project_id, result)
        if strict and result.errors:
            raise exceptions.ValidationError(result.errors)
        pipeline.store(rows, request.auth.project_id, "rest", result)
        return Response(IngestResultSerializer(result).data)


def _strict_flag(request) -> bool:
    raw = request.query_params.get("strict", "true").lower()
    if raw not in ("true", "false", "1", "0"):
        raise exceptions.ValidationError({"strict": ["Must be true or false."]})
    return raw in ("true", "1")


def _check_batch_size(count: int) -> None:
    if count == 0:
        raise exceptions.ValidationError({"events": ["The batch holds no events."]})
    if count > settings.APM_INGEST_MAX_EVENTS:
        raise PayloadTooLarge(
            f"{count} events in one request; the limit is {settings.APM_INGEST_MAX_EVENTS}."
        )


def _take_rate_tokens(key: ApiKey, count: int) -> None:
    wait = ratelimit.take(
        key.pk,
        count,
        settings.APM_INGEST_RATE_LIMIT,
        max(settings.APM_INGEST_RATE_BURST, settings.APM_INGEST_MAX_EVENTS),
    )
    if wait:
        raise exceptions.Throttled(wait=wait, detail="Ingest rate limit of this API key exceeded.")


OTLP_SKIPPED_SPANS = Counter(
    "apm_otlp_spans_skipped_total", "OTLP spans not stored because they are not SERVER spans."
)
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
        content_type = self._content_type(request)
        body = read_body(
            request._request, settings.APM_INGEST_MAX_BYTES, (otlp.PROTOBUF, otlp.JSON)
        )
        try:
            decoded = otlp.decode_spans(otlp.parse_request(body, content_type))
        except otlp.OtlpDecodeError as exc:
            raise exceptions.ParseError(str(exc)) from exc
        OTLP_SKIPPED_SPANS.inc(decoded.skipped)
        result = pipeline.IngestResult()
        if decoded.events:
            _check_batch_size(len(decoded.events))
            _take_rate_tokens(request.auth, len(decoded.events))
            rows = pipeline.validate(decoded.events, request.auth.project_id, result)
            pipeline.store(rows, request.auth.project_id, "otlp", result)
        message = _partial_success_message(result, decoded.skipped)
        return HttpResponse(
            otlp.encode_response(content_type, result.rejected, message), content_type=content_type
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


def _partial_success_message(result: pipeline.IngestResult, skipped: int) -> str:
    parts = []
    if result.errors:
        shown = list(result.errors.items())[:10]
        parts.append(
            "; ".join(f"{k.replace('events', 'spans', 1)}: {' '.join(v)}" for k, v in shown)
        )
    if skipped:
        parts.append(f"{skipped} non-SERVER span(s) skipped (not HTTP requests served).")
    return " ".join(parts)


# --- KPIs ------------------------------------------------------------------------------

WINDOW_PARAMETERS = [
    OpenApiParameter(
        "from", OpenApiTypes.DATETIME, description="Start (inclusive); default 24 h before `to`."
    ),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="End (exclusive); default now."),
    OpenApiParameter("service", str),
    OpenApiParameter("endpoint", str),
    OpenApiParameter("method", str),
    OpenApiParameter("status_class", str, enum=["1xx", "2xx", "3xx", "4xx", "5xx"]),
    OpenApiParameter("environment", str),
]


class KpiView(APIView):
    """Shared by the KPI endpoints: parse the window and filters, build the query."""

    def kpi_query(self, request) -> tuple[KpiQuery, analytics_params.Window]:
        window, filters = analytics_params.window_and_filters(request.query_params)
        database = connections[db_router.read_alias()]
        query = KpiQuery(request.auth.project_id, window.start, window.end, filters, database)
        return query, window


class KpisView(KpiView):
    @extend_schema(
        summary="KPIs over a window",
        description="Traffic, errors, latency percentiles and Apdex of the project's "
        "requests (filtered), over [from, to). Current to the second: rollups for closed "
        "buckets, raw requests for the rest.",
        parameters=WINDOW_PARAMETERS,
        responses={200: KpiSerializer, **ERROR_RESPONSES},
    )
    def get(self, request):
        query, window = self.kpi_query(request)
        return Response(query.totals().as_dict(window.seconds))


class TimeseriesView(KpiView):
    @extend_schema(
        summary="KPIs per time bucket",
        description="The KPIs per minute, hour or day bucket (UTC), zero-filled.",
        parameters=[
            *WINDOW_PARAMETERS,
            OpenApiParameter(
                "interval", str, enum=["minute", "hour", "day"], description="Default hour."
            ),
        ],
        responses={200: results_of(TimeseriesPointSerializer), **ERROR_RESPONSES},
    )
    def get(self, request):
        query, window = self.kpi_query(request)
        interval = analytics_params.interval(request.query_params, window)
        step = analytics_params.INTERVALS[interval]
        results = []
        for bucket, kpi in query.timeseries(interval):
            # Edge buckets count only the part of them inside the window.
            seconds = (min(bucket + step, window.end) - max(bucket, window.start)).total_seconds()
            results.append({"bucket": bucket, **kpi.as_dict(seconds)})
        # Plain dicts already in the documented shape: a serializer per point would cost
        # more than the query on long series.
        return Response({"results": results})


class TopEndpointsView(KpiView):
    @extend_schema(
        summary="Endpoints ranked by a KPI",
        description="Endpoints (service, endpoint, method) ranked by hits, errors, error "
        "rate, p95 or p99 latency (highest first) or Apdex (lowest first). Rates and "
        "percentiles rank only endpoints with at least APM_TOP_MIN_HITS hits.",
        parameters=[
            *WINDOW_PARAMETERS,
            OpenApiParameter(
                "by", str, enum=list(analytics_params.RANKINGS), description="Default hits."
            ),
            OpenApiParameter("limit", int, description="1-100, default 10."),
        ],
        responses={200: results_of(TopEndpointSerializer), **ERROR_RESPONSES},
    )
    def get(self, request):
        query, window = self.kpi_query(request)
        by, limit = analytics_params.ranking(request.query_params)
        rows = query.grouped(("service", "endpoint", "method"), with_sketch=True)
        if by not in ("hits", "errors"):
            rows = [row for row in rows if row[1].hits >= settings.APM_TOP_MIN_HITS]
        ranked = [(key, kpi.as_dict(window.seconds)) for key, kpi in rows]
        ranked.sort(key=lambda item: _rank_key(by, item[1]))
        results = [
            {"service": key[0], "endpoint": key[1], "method": key[2], **kpi}
            for key, kpi in ranked[:limit]
        ]
        return Response({"results": results})


def _rank_key(by: str, kpi: dict) -> tuple:
    if by in ("p95", "p99"):
        value = -(kpi["latency_ms"][by] or 0.0)
    elif by == "apdex":
        value = kpi["apdex"] if kpi["apdex"] is not None else 1.0
    else:
        value = -kpi[by]
    return value, -kpi["hits"]


class ServicesView(KpiView):
    @extend_schema(
        summary="KPIs per service",
        description="One row per service seen in the window, busiest first.",
        parameters=WINDOW_PARAMETERS,
        responses={200: results_of(ServiceKpiSerializer), **ERROR_RESPONSES},
    )
    def get(self, request):
        query, window = self.kpi_query(request)
        rows = sorted(query.grouped(("service",), with_sketch=True), key=lambda row: -row[1].hits)
        results = [{"service": key[0], **kpi.as_dict(window.seconds)} for key, kpi in rows]
        return Response({"results": results})


# --- Search ----------------------------------------------------------------------------

SEARCH_MODES = ("semantic", "keyword", "hybrid")


class SearchResultSerializer(ApiRequestSerializer):
    score = serializers.FloatField(
        help_text="semantic: cosine similarity; keyword: ts_rank_cd; "
        "hybrid: reciprocal rank fusion."
    )

    class Meta(ApiRequestSerializer.Meta):
        fields = [*ApiRequestSerializer.Meta.fields, "score"]


def load_hits(project_id: int, hits: list) -> list[dict]:
    """The request records of search hits, in hit order, with their scores."""
    if not hits:
        return []
    times = [hit[1] for hit in hits]
    # The time bounds let PostgreSQL skip every daily partition the hits are not in.
    rows = ApiRequest.objects.filter(
        project_id=project_id, time__gte=min(times), time__lte=max(times),
        pk__in=[(hit[0], hit[1]) for hit in hits],
    )  # fmt: skip
    by_key = {(row.event_id, row.time): row for row in rows}
    results = []
    for event_id, time, score in hits:
        row = by_key.get((event_id, time))
        if row is not None:  # gone since (retention, delete)
            row.score = score
            results.append(row)
    return SearchResultSerializer(results, many=True).data


def _provider_or_400():
    try:
        return ai.require_provider()
    except ai.NoProvider as exc:
        raise exceptions.ValidationError({"mode": [str(exc)]}) from exc


def _embed_query(provider, text: str) -> list[float]:
    try:
        return provider.embed([text], query=True)[0]
    except ai.EmbeddingError as exc:
        raise EmbeddingUnavailable(str(exc)) from exc


class EmbeddingUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "embedding_unavailable"
    default_detail = "The embedding provider is unavailable; keyword search still works."


class SearchView(APIView):
    @extend_schema(
        summary="Search requests by meaning or words",
        description="semantic: nearest requests by embedding (needs EMBEDDING_PROVIDER); "
        "keyword: PostgreSQL full-text search; hybrid (default with a provider, else keyword): "
        "both, fused by reciprocal rank. Requests are searchable once the embedding "
        "backfill (run_jobs / embed_apirequests) has processed them.",
        parameters=[
            OpenApiParameter("q", str, required=True, description="1-500 characters."),
            OpenApiParameter("mode", str, enum=list(SEARCH_MODES)),
            OpenApiParameter("limit", int, description="1-100, default 10."),
            OpenApiParameter("service", str),
            OpenApiParameter("from", OpenApiTypes.DATETIME),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
        ],
        responses={200: results_of(SearchResultSerializer), **ERROR_RESPONSES},
    )
    def get(self, request):
        text, mode, limit, filters = _search_params(request.query_params)
        project_id = request.auth.project_id
        database = connections[db_router.read_alias()]
        if mode == "keyword":
            hits = search.keyword(database, project_id, text, filters, limit)
        else:
            provider = _provider_or_400()
            vector = _embed_query(provider, text)
            depth = limit if mode == "semantic" else max(limit, search.HYBRID_DEPTH)
            hits = search.semantic(database, provider, project_id, vector, filters, depth)
            if mode == "hybrid":
                words = search.keyword(database, project_id, text, filters, depth)
                hits = search.hybrid(hits, words, limit)
        return Response({"mode": mode, "results": load_hits(project_id, hits)})


def _search_params(query_params):
    text = query_params.get("q", "").strip()
    if not text:
        raise exceptions.ValidationError({"q": ["A search text is required."]})
    if len(text) > settings.APM_SEARCH_MAX_QUERY_CHARS:
        raise exceptions.ValidationError(
            {"q": [f"At most {settings.APM_SEARCH_MAX_QUERY_CHARS} characters."]}
        )
    default_mode = "hybrid" if settings.EMBEDDING_PROVIDER != "none" else "keyword"
    mode = query_params.get("mode", default_mode)
    if mode not in SEARCH_MODES:
        raise exceptions.ValidationError({"mode": [f"Use one of {', '.join(SEARCH_MODES)}."]})
    _, limit = analytics_params.ranking({"limit": query_params.get("limit", "10")})
    window, kpi_filters = analytics_params.window_and_filters(
        {key: query_params[key] for key in ("from", "to", "service") if key in query_params}
    )
    filters = search.SearchFilters(
        service=kpi_filters.service,
        start=window.start if "from" in query_params else None,
        end=window.end if "to" in query_params else None,
    )
    return text, mode, limit, filters


class SimilarRequestsView(APIView):
    @extend_schema(
        summary="Requests similar to one request",
        description="The nearest requests by embedding (needs EMBEDDING_PROVIDER). 404 until "
        "the backfill has embedded the request.",
        parameters=[OpenApiParameter("limit", int, description="1-100, default 10.")],
        responses={
            200: results_of(SearchResultSerializer),
            404: ErrorSerializer,
            **ERROR_RESPONSES,
        },
    )
    def get(self, request, event_id):
        project_id = request.auth.project_id
        provider = _provider_or_400()
        _, limit = analytics_params.ranking({"limit": request.query_params.get("limit", "10")})
        database = connections[db_router.read_alias()]
        vector = search.embedding_of_request(database, provider, project_id, event_id)
        if vector is None:
            raise exceptions.NotFound(
                "No embedding for this request (yet): the embedding backfill (run_jobs, "
                "embed_apirequests) processes requests a few minutes after they arrive."
            )
        hits = search.semantic(
            database, provider, project_id, vector, search.SearchFilters(), limit + 1
        )
        hits = [hit for hit in hits if hit[0] != event_id][:limit]
        return Response({"results": load_hits(project_id, hits)})
