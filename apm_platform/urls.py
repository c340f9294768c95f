"""Root URL routing."""

from django.contrib import admin
from django.urls import include, path

from apm_platform import health, login_throttle, telemetry
from observability.api import urls as api_urls
from observability.ui import urls as ui_urls

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", telemetry.metrics_view, name="metrics"),
    path("admin/login/", login_throttle.throttled(admin.site.login), name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include(api_urls)),
    *api_urls.otlp,
    # The built-in UI: `/` (its login page when signed out) and the project pages.
    path("", include(ui_urls)),
]
