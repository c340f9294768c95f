"""Raw paths become route templates."""

import pytest

from observability.ingest.routes import normalize_path


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/users/123", "/users/{id}"),
        ("/users/123/orders/9f1c2b3a4d5e6f708192a3b4", "/users/{id}/orders/{id}"),
        ("/orders/550e8400-e29b-41d4-a716-446655440000/items", "/orders/{id}/items"),
        ("/reset/eyJhbGciOiJIUzI1NiIsInR5cCI6", "/reset/{id}"),
        ("/invoices/INV-2024-000123", "/invoices/{id}"),
        ("/reports/2026-11-27", "/reports/{id}"),
        ("/users/jane@example.com", "/users/{id}"),
        ("/api/v2/products", "/api/v2/products"),
        ("/auth/2fa/verify", "/auth/2fa/verify"),
        ("/search?q=shoes&page=2", "/search"),
        ("/docs#section-4", "/docs"),
        ("//double//slashes/", "/double/slashes"),
        ("/", "/"),
        ("", "/"),
        ("/health-check/ready", "/health-check/ready"),
        ("/static/app.3f9a2b1c.js", "/static/app.3f9a2b1c.js"),
    ],
)
def test_normalize_path(path, route):
    assert normalize_path(path) == route
