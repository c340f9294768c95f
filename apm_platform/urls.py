"""Root URL routing."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apm_platform import health, telemetry
from observability.api.ingest import OtlpTracesView

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", telemetry.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("observability.api.urls")),
    path("v1/traces", OtlpTracesView.as_view(), name="otlp-traces"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
