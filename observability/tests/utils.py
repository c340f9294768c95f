"""Test helpers: projects, keys, clients and request rows built in code."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta

from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from observability.models import ApiKey, ApiRequest, Project


def make_project(slug: str = "acme") -> Project:
    return Project.objects.create(slug=slug, name=slug.title())


def make_key(project: Project, scopes=ApiKey.SCOPES, name: str = "test") -> str:
    return ApiKey.objects.issue(project, name, list(scopes))[1]


def client_with(key: str | None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def make_request(project: Project, time: datetime | None = None, **fields) -> ApiRequest:
    values = {
        "time": time or timezone.now() - timedelta(minutes=1),
        "service": "checkout",
        "endpoint": "/cart",
        "method": "GET",
        "status_code": 200,
        "latency_ms": 42.0,
        "event_id": uuid.uuid4(),
    }
    values.update(fields)
    return ApiRequest.objects.create(project=project, **values)


def event_payload(**fields) -> dict:
    """A valid event (JSON-ready) for ingest or for creating one request."""
    payload = {
        "event_id": str(uuid.uuid4()),
        "time": (timezone.now() - timedelta(minutes=1)).isoformat(),
        "service": "checkout",
        "endpoint": "/cart",
        "method": "GET",
        "status_code": 200,
        "latency_ms": 12.5,
    }
    payload.update(fields)
    return payload


@contextlib.contextmanager
def database_unreachable(django_db_blocker, port: int):
    """The default database pointed at a port where no server listens (a real connection
    attempt that fails), restored after."""
    default = connections["default"]
    saved = dict(default.settings_dict)
    with django_db_blocker.unblock():
        default.close()
        default.settings_dict.update(HOST="127.0.0.1", PORT=port, OPTIONS={"connect_timeout": 2})
        try:
            yield
        finally:
            default.close()
            default.settings_dict.clear()
            default.settings_dict.update(saved)
