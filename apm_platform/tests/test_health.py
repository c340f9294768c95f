"""/healthz, /readyz and /metrics."""

import pytest
from django.db import connection

from apm_platform import health
from apm_platform.embedded_db import EmbeddedPostgres
from observability.tests.utils import database_unreachable


def test_healthz_needs_no_database(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_and_migrations(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is True
    assert checks["migrations"] == {"ok": True, "pending": 0}


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_is_pending(client, monkeypatch):
    from django.db.migrations.loader import MigrationLoader

    monkeypatch.setattr(health, "_migrations_complete", False)
    (latest,) = [name for app, name in MigrationLoader(connection).graph.leaf_nodes()
                 if app == "observability"]  # fmt: skip
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'observability' AND name = %s", [latest]
        )

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == {"ok": False, "pending": 1}


def test_readyz_is_503_when_the_database_is_unreachable(client, django_db_blocker, unused_port):
    """A real connection attempt to a port where no server listens."""
    with database_unreachable(django_db_blocker, unused_port):
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is False
    assert "migrations" not in body["checks"]
    with django_db_blocker.unblock():  # /metrics also reads the SLO statuses
        metrics = client.get("/metrics").content.decode()
    assert 'apm_db_errors_total{error="OperationalError",view="readyz"}' in metrics


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_embedded_instance_is_the_tests_own(settings):
    embedded: EmbeddedPostgres | None = settings.EMBEDDED_DATABASE
    if embedded is None:
        pytest.skip("DATABASE_URL is set: no embedded database")
    assert embedded.data_dir.name == "test-pg"
    assert embedded.is_running()
    assert embedded.start() is False  # already running: reused, not restarted
