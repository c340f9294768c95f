"""KPIs over a window: totals, time series, endpoint rankings, services."""

from __future__ import annotations

from django.conf import settings
from django.db import connections
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apm_platform import db_router
from observability.analytics.queries import RANKINGS, KpiQuery
from observability.api import params
from observability.api.schema import ERROR_RESPONSES, LIMIT, results_of


class LatencySerializer(serializers.Serializer):
    avg = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)


class KpiSerializer(serializers.Serializer):
    """KPIs of a set of requests. Percentiles are within 0.9 % of the exact value."""

    hits = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Requests answered with a 5xx status.")
    error_rate = serializers.FloatField(help_text="errors / hits (0 without hits).")
    rps = serializers.FloatField(help_text="Requests per second over the window or bucket.")
    apdex = serializers.FloatField(
        allow_null=True,
        help_text="(satisfied + tolerating / 2) / hits; satisfied <= T, tolerating <= 4T, "
        "5xx frustrated; T per service. Null without hits.",
    )
    latency_ms = LatencySerializer()


class TimeseriesPointSerializer(KpiSerializer):
    bucket = serializers.DateTimeField(help_text="Start of the bucket (UTC).")


class TopEndpointSerializer(KpiSerializer):
    service = serializers.CharField()
    endpoint = serializers.CharField()
    method = serializers.CharField()


class ServiceKpiSerializer(KpiSerializer):
    service = serializers.CharField()


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

# The views answer with plain dicts already in the documented shapes (the serializers
# above describe them for the schema): a serializer per point would cost more than the
# query on long series.


class KpiView(APIView):
    """Shared by the KPI endpoints: the window and filters as a query on a read database."""

    def kpi_query(self, request) -> KpiQuery:
        window, filters = params.window_and_filters(request.query_params)
        database = connections[db_router.read_alias()]
        return KpiQuery(request.auth.project_id, window, filters, database)


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
        return Response(self.kpi_query(request).totals())


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
        query = self.kpi_query(request)
        interval = params.interval(request.query_params, query.window)
        return Response({"results": query.timeseries(interval)})


class TopEndpointsView(KpiView):
    @extend_schema(
        summary="Endpoints ranked by a KPI",
        description="Endpoints (service, endpoint, method) ranked by hits, errors, error "
        "rate, p95 or p99 latency (highest first) or Apdex (lowest first). Rates and "
        "percentiles rank only endpoints with at least APM_TOP_MIN_HITS hits.",
        parameters=[
            *WINDOW_PARAMETERS,
            OpenApiParameter("by", str, enum=list(RANKINGS), description="Default hits."),
            LIMIT,
        ],
        responses={200: results_of(TopEndpointSerializer), **ERROR_RESPONSES},
    )
    def get(self, request):
        query = self.kpi_query(request)
        by, limit = params.ranking(request.query_params), params.limit(request.query_params)
        results = query.top_endpoints(by, limit, settings.APM_TOP_MIN_HITS)
        return Response({"results": results})


class ServicesView(KpiView):
    @extend_schema(
        summary="KPIs per service",
        description="One row per service seen in the window, busiest first.",
        parameters=WINDOW_PARAMETERS,
        responses={200: results_of(ServiceKpiSerializer), **ERROR_RESPONSES},
    )
    def get(self, request):
        return Response({"results": self.kpi_query(request).services()})
