"""Search over request records (`/api/v1/search/`) and similar requests."""

from __future__ import annotations

from django.conf import settings
from django.db import connections
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apm_platform import db_router
from observability import ai
from observability.ai import search
from observability.analytics import sketches
from observability.api import params
from observability.api.errors import ErrorSerializer
from observability.api.requests import ApiRequestSerializer
from observability.api.schema import ERROR_RESPONSES, LIMIT, results_of


class SearchResultSerializer(ApiRequestSerializer):
    score = serializers.FloatField(
        help_text="semantic: cosine similarity; keyword: ts_rank_cd; "
        "hybrid: reciprocal rank fusion."
    )

    class Meta(ApiRequestSerializer.Meta):
        fields = [*ApiRequestSerializer.Meta.fields, "score"]


class EmbeddingUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "embedding_unavailable"
    default_detail = "The embedding provider is unavailable; keyword search still works."


def _provider_or_400(database):
    if not sketches.of(database).has_pgvector:
        raise exceptions.ValidationError({"mode": [ai.NO_VECTOR_EXTENSION]})
    try:
        return ai.require_provider()
    except ai.NoProvider as exc:
        raise exceptions.ValidationError({"mode": [str(exc)]}) from exc


def _results(database, project_id: int, hits) -> list[dict]:
    return SearchResultSerializer(search.requests_of(database, project_id, hits), many=True).data


class SearchView(APIView):
    @extend_schema(
        summary="Search requests by meaning or words",
        description="semantic: nearest requests by embedding (needs EMBEDDING_PROVIDER); "
        "keyword: PostgreSQL full-text search; hybrid (default with a provider, else keyword): "
        "both, fused by reciprocal rank. Requests are searchable once the embedding "
        "backfill (run_jobs / embed_apirequests) has processed them.",
        parameters=[
            OpenApiParameter(
                "q",
                {"type": "string", "minLength": 1, "maxLength": 500},
                required=True,
                description="The text to search for (APM_SEARCH_MAX_QUERY_CHARS at most).",
            ),
            OpenApiParameter("mode", str, enum=list(search.MODES)),
            LIMIT,
            OpenApiParameter("service", str),
            OpenApiParameter("from", OpenApiTypes.DATETIME),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
        ],
        responses={200: results_of(SearchResultSerializer), **ERROR_RESPONSES},
    )
    def get(self, request):
        database = connections[db_router.read_alias()]
        text, mode, limit, filters = _search_params(request.query_params, database)
        provider = None if mode == "keyword" else _provider_or_400(database)
        project_id = request.auth.project_id
        try:
            hits = search.find(database, provider, project_id, text, mode, filters, limit)
        except ai.EmbeddingError as exc:
            raise EmbeddingUnavailable(str(exc)) from exc
        return Response({"mode": mode, "results": _results(database, project_id, hits)})


def _search_params(query_params, database):
    text = query_params.get("q", "").strip()
    if not text:
        raise exceptions.ValidationError({"q": ["A search text is required."]})
    if len(text) > settings.APM_SEARCH_MAX_QUERY_CHARS:
        raise exceptions.ValidationError(
            {"q": [f"At most {settings.APM_SEARCH_MAX_QUERY_CHARS} characters."]}
        )
    semantic = settings.EMBEDDING_PROVIDER != "none" and sketches.of(database).has_pgvector
    default_mode = "hybrid" if semantic else "keyword"
    mode = query_params.get("mode", default_mode)
    if mode not in search.MODES:
        raise exceptions.ValidationError({"mode": [f"Use one of {', '.join(search.MODES)}."]})
    limit = params.limit(query_params)
    window, kpi_filters = params.window_and_filters(
        {key: query_params[key] for key in ("from", "to", "service") if key in query_params}
    )
    filters = search.SearchFilters(
        service=kpi_filters.service,
        start=window.start if "from" in query_params else search.default_start(),
        end=window.end if "to" in query_params else None,
    )
    return text, mode, limit, filters


class SimilarRequestsView(APIView):
    @extend_schema(
        summary="Requests similar to one request",
        description="The nearest requests by embedding (needs EMBEDDING_PROVIDER). 404 until "
        "the backfill has embedded the request.",
        parameters=[LIMIT],
        responses={
            200: results_of(SearchResultSerializer),
            404: ErrorSerializer,
            **ERROR_RESPONSES,
        },
    )
    def get(self, request, event_id):
        project_id = request.auth.project_id
        database = connections[db_router.read_alias()]
        provider = _provider_or_400(database)
        limit = params.limit(request.query_params)
        hits = search.similar(database, provider, project_id, event_id, limit)
        if hits is None:
            raise exceptions.NotFound(
                "No embedding for this request (yet): the embedding backfill (run_jobs, "
                "embed_apirequests) processes requests a few minutes after they arrive."
            )
        return Response({"results": _results(database, project_id, hits)})
