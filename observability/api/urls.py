"""Routes of the /api/v1/ API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from observability.api import analytics, ingest, requests, search

router = SimpleRouter()
router.register("requests", requests.ApiRequestViewSet, basename="request")
router.register("endpoints", requests.EndpointViewSet, basename="endpoint")

urlpatterns = [
    path("ingest/", ingest.IngestView.as_view(), name="ingest"),
    path("kpis/", analytics.KpisView.as_view(), name="kpis"),
    path("kpis/timeseries/", analytics.TimeseriesView.as_view(), name="kpis-timeseries"),
    path("top-endpoints/", analytics.TopEndpointsView.as_view(), name="top-endpoints"),
    path("services/", analytics.ServicesView.as_view(), name="services"),
    path("search/", search.SearchView.as_view(), name="search"),
    path(
        "requests/<uuid:event_id>/similar/",
        search.SimilarRequestsView.as_view(),
        name="request-similar",
    ),
    *router.urls,
]
