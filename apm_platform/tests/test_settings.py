"""Settings read from the environment, checked in a fresh interpreter per case."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
PRINT_SETTINGS = (
    "import json, apm_platform.settings as s; "
    "print(json.dumps({'debug': s.DEBUG, 'secret': s.SECRET_KEY, 'dbs': sorted(s.DATABASES), "
    "'db_host': s.DATABASES['default']['HOST'], 'embedded': s.EMBEDDED_DATABASE is not None, "
    "'mirror': s.DATABASES.get('replica1', {}).get('TEST'), 'hosts': s.ALLOWED_HOSTS}))"
)
# Variables these tests control; everything else of the parent environment is kept.
CONTROLLED = {
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "DEBUG",
    "ALLOWED_HOSTS",
    "DATABASE_REPLICA_URLS",
    "DATABASE_REPLICA_URLS_FILE",
    "APM_ANALYTICS_BACKEND",
    "DJANGO_SETTINGS_MODULE",
}


def load_settings(**env):
    clean = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    result = subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        env={**clean, **env},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        return None, result.stderr
    return json.loads(result.stdout), ""


PROD = {"DATABASE_URL": "postgres://u:p@db.internal:5432/apm", "ALLOWED_HOSTS": "apm.example.com"}


def test_without_database_url_it_is_embedded_development():
    values, _ = load_settings()
    assert values["embedded"] is True
    assert values["debug"] is True
    assert values["db_host"] == "127.0.0.1"


def test_production_requires_a_secret_key():
    values, error = load_settings(**PROD)
    assert values is None
    assert "SECRET_KEY" in error and "ImproperlyConfigured" in error


def test_production_requires_allowed_hosts():
    values, error = load_settings(DATABASE_URL=PROD["DATABASE_URL"], SECRET_KEY="s3cret")
    assert values is None
    assert "ALLOWED_HOSTS" in error


def test_secrets_can_come_from_files(tmp_path):
    (tmp_path / "key").write_text("from-a-file\n")
    (tmp_path / "db").write_text("postgres://u:p@db.from.file:5432/apm")

    values, error = load_settings(
        SECRET_KEY_FILE=str(tmp_path / "key"),
        DATABASE_URL_FILE=str(tmp_path / "db"),
        ALLOWED_HOSTS="x",
    )

    assert values is not None, error
    assert values["secret"] == "from-a-file"
    assert values["db_host"] == "db.from.file"
    assert values["debug"] is False


def test_an_unreadable_secret_file_is_a_clear_error(tmp_path):
    values, error = load_settings(SECRET_KEY_FILE=str(tmp_path / "missing"), **PROD)
    assert values is None
    assert "SECRET_KEY_FILE" in error


def test_replicas_are_extra_databases_mirroring_default_in_tests():
    values, error = load_settings(
        SECRET_KEY="s", DATABASE_REPLICA_URLS="postgres://r1/apm, postgres://r2/apm", **PROD
    )
    assert values is not None, error
    assert values["dbs"] == ["default", "replica1", "replica2"]
    assert values["mirror"] == {"MIRROR": "default"}


def test_replica_urls_can_come_from_a_file(tmp_path):
    (tmp_path / "replicas").write_text("postgres://u:p@r1:5433/apm,postgres://u:p@r2:5434/apm\n")
    values, error = load_settings(
        SECRET_KEY="s", DATABASE_REPLICA_URLS_FILE=str(tmp_path / "replicas"), **PROD
    )
    assert values is not None, error
    assert values["dbs"] == ["default", "replica1", "replica2"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("APM_ANALYTICS_BACKEND", "mysql"),
        ("APM_RAW_RETENTION_DAYS", "0"),
        ("APM_INGEST_MAX_EVENTS", "lots"),
    ],
)
def test_bad_values_fail_at_start_up_naming_the_variable(name, value):
    values, error = load_settings(**{name: value})
    assert values is None
    assert name in error
