"""Routes of the /api/v1/ API."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from observability import views

router = SimpleRouter()
router.register("requests", views.ApiRequestViewSet, basename="request")
router.register("endpoints", views.EndpointViewSet, basename="endpoint")

urlpatterns = [
    path("ingest/", views.IngestView.as_view(), name="ingest"),
    *router.urls,
]
