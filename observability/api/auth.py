"""API-key authentication and scope permissions for the REST and OTLP endpoints."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from apm_platform import db_routing
from observability.models import ApiKey


def key_from_headers(headers) -> str | None:
    """The API key sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`."""
    authorization = headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("X-API-Key", "").strip() or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a project API key; `request.auth` is the ApiKey, `request.user` None."""

    def authenticate(self, request):
        plaintext = key_from_headers(request.headers)
        if plaintext is None:
            return None
        key = ApiKey.objects.authenticate(plaintext)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        key.touch()
        if db_routing.recently_wrote(key.last_write_at):
            db_routing.pin_to_primary()  # read-after-write: this client just wrote
        return None, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing or wrong.
        return 'Bearer realm="api"'


class HasScope(permissions.BasePermission):
    """Reads need the `read` scope, writes the `ingest` scope (or the view's `required_scope`)."""

    message = "This API key does not have the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        scope = getattr(view, "required_scope", None)
        if scope is None:
            safe = request.method in permissions.SAFE_METHODS
            scope = ApiKey.SCOPE_READ if safe else ApiKey.SCOPE_INGEST
        if not key.has_scope(scope):
            self.message = f"This API key lacks the '{scope}' scope."
            return False
        return True


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = ["BearerKey", "ApiKeyHeader"]

    def get_security_requirement(self, auto_schema):
        # Either header authenticates (OR), so two alternative requirements.
        return [{"BearerKey": []}, {"ApiKeyHeader": []}]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "A project API key."},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
