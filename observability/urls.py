"""Routes of the /api/v1/ API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from observability import views

router = SimpleRouter()
router.register("requests", views.ApiRequestViewSet, basename="request")
router.register("endpoints", views.EndpointViewSet, basename="endpoint")

urlpatterns = [
    path("ingest/", views.IngestView.as_view(), name="ingest"),
    path("kpis/", views.KpisView.as_view(), name="kpis"),
    path("kpis/timeseries/", views.TimeseriesView.as_view(), name="kpis-timeseries"),
    path("top-endpoints/", views.TopEndpointsView.as_view(), name="top-endpoints"),
    path("services/", views.ServicesView.as_view(), name="services"),
    path("search/", views.SearchView.as_view(), name="search"),
    path(
        "requests/<uuid:event_id>/similar/",
        views.SimilarRequestsView.as_view(),
        name="request-similar",
    ),
    *router.urls,
]
