"""The OpenAPI schema and the Swagger UI."""

from io import StringIO

import pytest
import yaml
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema():
    out = StringIO()
    # --validate checks against the OpenAPI 3 JSON schema; --fail-on-warn turns any
    # endpoint drf-spectacular could not describe into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def test_every_api_route_is_documented(schema):
    assert set(schema["paths"]) == {
        "/api/v1/requests/",
        "/api/v1/requests/{event_id}/",
        "/api/v1/ingest/",
        "/api/v1/endpoints/",
        "/v1/traces",
        "/api/v1/kpis/",
        "/api/v1/kpis/timeseries/",
        "/api/v1/top-endpoints/",
        "/api/v1/services/",
        "/api/v1/anomalies/",
        "/api/v1/search/",
        "/api/v1/requests/{event_id}/similar/",
        "/api/v1/error-groups/",
        "/api/v1/error-groups/{id}/",
        "/api/v1/slos/",
        "/api/v1/slos/{id}/",
        "/api/v1/slos/{id}/status/",
        "/api/v1/alerts/",
        "/api/v1/alerts/{id}/",
        "/api/v1/notification-channels/",
        "/api/v1/notification-channels/{id}/",
        "/api/v1/notification-channels/{id}/deliveries/",
        "/api/v1/notification-rules/",
        "/api/v1/notification-rules/{id}/",
    }


def test_slos_and_alerts_are_documented(schema):
    status = schema["paths"]["/api/v1/slos/{id}/status/"]["get"]["responses"]["200"]
    ref = status["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert {"sli", "error_budget", "burn_rates", "budget_history", "alerts"} <= set(fields)
    assert set(schema["paths"]["/api/v1/slos/{id}/"]) - {"parameters"} == {
        "get",
        "put",
        "patch",
        "delete",
    }
    channel = schema["components"]["schemas"]["ChannelRequest"]["properties"]
    assert "secret" in channel and "secret" not in schema["components"]["schemas"][
        "Channel"]["properties"]  # fmt: skip


def test_error_groups_are_documented(schema):
    listing = schema["paths"]["/api/v1/error-groups/"]["get"]
    parameters = {p["name"] for p in listing["parameters"]}
    assert {"service", "endpoint", "status", "from", "to", "ordering", "cursor"} <= parameters
    detail = schema["paths"]["/api/v1/error-groups/{id}/"]
    assert set(detail) - {"parameters"} == {"get", "patch"}
    body = detail["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    change = schema["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert set(change["properties"]) == {"status"}
    fields = schema["components"]["schemas"]["ErrorGroupDetail"]["properties"]
    assert {"timeline", "endpoints", "samples", "title", "count", "status"} <= set(fields)


def test_anomalies_are_documented(schema):
    listing = schema["paths"]["/api/v1/anomalies/"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"at", "service", "endpoint", "signal"}
    fields = schema["components"]["schemas"]["Finding"]["properties"]
    assert {"key", "firing", "observed", "threshold", "baseline", "requests", "minutes"} <= set(
        fields
    )


def test_filters_and_error_shapes_are_documented(schema):
    listing = schema["paths"]["/api/v1/requests/"]["get"]
    parameters = {p["name"] for p in listing["parameters"]}
    assert {
        "service",
        "endpoint",
        "method",
        "status_code",
        "status_class",
        "environment",
        "from",
        "to",
        "min_latency_ms",
        "max_latency_ms",
        "ordering",
        "cursor",
    } <= parameters
    for status in ("400", "401", "403", "503"):
        ref = listing["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Error"
    assert set(schema["components"]["schemas"]["Error"]["properties"]) == {
        "code",
        "detail",
        "errors",
    }


def test_either_auth_header_is_enough(schema):
    listing = schema["paths"]["/api/v1/requests/"]["get"]
    assert listing["security"] == [{"BearerKey": []}, {"ApiKeyHeader": []}]


def test_schema_and_docs_are_served_without_a_key(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    # `/` is the built-in UI (its login page when signed out); Swagger stays here.
    assert client.get("/").url == "/login/"


def test_swagger_assets_are_served_locally(client):
    """The UI works on hosts without Internet access (sidecar assets, not a CDN)."""
    docs = client.get("/api/docs/").content.decode()
    assert "cdn.jsdelivr" not in docs
    asset = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert asset.status_code == 200
