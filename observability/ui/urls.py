"""The UI's routes: `/` and everything under /login/, /logout/ and /p/<project>/."""

from django.urls import path

from observability.ui import accounts, errors, explorer, project_settings, search, slos, views

app_name = "ui"

project = [
    path("", views.overview, name="overview"),
    path("service/", views.service, name="service"),
    path("service/endpoints/", views.service_endpoints, name="service-endpoints"),
    path("endpoint/", views.endpoint, name="endpoint"),
    path("charts/", views.charts_fragment, name="charts"),
    path("requests/", explorer.requests_page, name="requests"),
    path("requests/rows/", explorer.requests_rows, name="request-rows"),
    path("requests/<uuid:event_id>/", explorer.request_detail, name="request"),
    path("requests/<uuid:event_id>/similar/", explorer.request_similar, name="request-similar"),
    path("search/", search.search_page, name="search"),
    path("errors/", errors.errors_page, name="errors"),
    path("errors/table/", errors.errors_table, name="errors-table"),
    path("errors/<int:group_id>/", errors.error_group, name="error-group"),
    path("errors/<int:group_id>/status/", errors.set_group_status, name="error-group-status"),
    path("slos/", slos.slo_list, name="slos"),
    path("slos/<int:slo_id>/", slos.slo_detail, name="slo"),
    path("settings/", project_settings.settings_page, name="settings"),
    path("settings/keys/", project_settings.create_key, name="key-create"),
    path("settings/keys/<int:key_id>/revoke/", project_settings.revoke_key, name="key-revoke"),
    path("settings/apdex/", project_settings.set_apdex, name="apdex"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", accounts.LogoutView.as_view(), name="logout"),
    *[path(f"p/<slug:slug>/{route.pattern}", route.callback, name=route.name) for route in project],
]
