"""Routes under /api/: the v1 API, its OpenAPI schema and Swagger UI."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from observability.api import (
    alerts,
    analytics,
    anomalies,
    error_groups,
    ingest,
    requests,
    search,
    slos,
)

router = SimpleRouter()
router.register("requests", requests.ApiRequestViewSet, basename="request")
router.register("endpoints", requests.EndpointViewSet, basename="endpoint")
router.register("error-groups", error_groups.ErrorGroupViewSet, basename="error-group")
router.register("slos", slos.SloViewSet, basename="slo")
router.register("alerts", alerts.AlertViewSet, basename="alert")
router.register("notification-channels", alerts.ChannelViewSet, basename="notification-channel")
router.register("notification-rules", alerts.RuleViewSet, basename="notification-rule")

v1 = [
    path("ingest/", ingest.IngestView.as_view(), name="ingest"),
    path("kpis/", analytics.KpisView.as_view(), name="kpis"),
    path("kpis/timeseries/", analytics.TimeseriesView.as_view(), name="kpis-timeseries"),
    path("top-endpoints/", analytics.TopEndpointsView.as_view(), name="top-endpoints"),
    path("services/", analytics.ServicesView.as_view(), name="services"),
    path("anomalies/", anomalies.AnomaliesView.as_view(), name="anomalies"),
    path("search/", search.SearchView.as_view(), name="search"),
    path(
        "requests/<uuid:event_id>/similar/",
        search.SimilarRequestsView.as_view(),
        name="request-similar",
    ),
    *router.urls,
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

# The OTLP/HTTP receiver lives at the path the OTLP specification gives (/v1/traces).
otlp = [path("v1/traces", ingest.OtlpTracesView.as_view(), name="otlp-traces")]
