"""API-key authentication and scope permissions for the REST and OTLP endpoints."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions, throttling

from apm_platform import db_routing
from observability import ratelimit
from observability.models import ApiKey, RateBucket


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
        if db_routing.recently_wrote(key.project.last_write_at):
            db_routing.pin_to_primary()  # read-after-write: this project just wrote
        return None, key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when the key is missing or wrong.
        return 'Bearer realm="api"'


# The scope each kind of request needs, unless the view names its own `required_scope`.
SCOPE_BY_METHOD = {
    **dict.fromkeys(permissions.SAFE_METHODS, ApiKey.SCOPE_READ),
    "POST": ApiKey.SCOPE_INGEST,
    # Changing or deleting stored data: not the ingest key every service carries.
    "PUT": ApiKey.SCOPE_ADMIN,
    "PATCH": ApiKey.SCOPE_ADMIN,
    "DELETE": ApiKey.SCOPE_ADMIN,
}


class HasScope(permissions.BasePermission):
    """Reads need `read`, sending data `ingest`, changes and deletes `admin`."""

    message = "This API key does not have the scope this endpoint needs."

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        scope = getattr(view, "required_scope", None) or SCOPE_BY_METHOD.get(
            request.method, ApiKey.SCOPE_ADMIN
        )
        if not key.has_scope(scope):
            self.message = f"This API key lacks the '{scope}' scope."
            return False
        return True


class AdminChangesMixin:
    """For configuration (SLOs, channels): reads need `read`, and every change, creation
    included, needs `admin` (not the `ingest` that POST needs elsewhere)."""

    @property
    def required_scope(self) -> str:
        if self.request.method in permissions.SAFE_METHODS:
            return ApiKey.SCOPE_READ
        return ApiKey.SCOPE_ADMIN


class ReadRateThrottle(throttling.BaseThrottle):
    """Per-key read limit (APM_READ_RATE_LIMIT requests/s, bursts to APM_READ_RATE_BURST),
    in the same PostgreSQL token buckets as ingest: every worker and node shares it."""

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if request.method not in permissions.SAFE_METHODS or not isinstance(key, ApiKey):
            return True
        self.wait_s = ratelimit.take(
            key.pk, RateBucket.READ, 1, settings.APM_READ_RATE_LIMIT, settings.APM_READ_RATE_BURST
        )
        return self.wait_s == 0

    def wait(self) -> float:
        return self.wait_s


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
