"""railway.json, setup_railway_env.sh, check_railway_db.sh and deploy-production.sh.

The Railway scripts run for real under /bin/sh and bash against the test database (the
embedded PostgreSQL, or DATABASE_URL's), with Railway's variables as Railway sets them;
deploy-production.sh runs its real preflight in --dry-run mode on secrets and certificates
made by the shipped bootstrap (no Docker engine here: the Docker commands are printed,
which is what --dry-run is for).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.db import connection
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[2]
RAILWAY = json.loads((ROOT / "railway.json").read_text())
BASE_ENV = {"PATH": os.environ["PATH"], "HOME": str(ROOT), "LANG": "C.UTF-8"}

pytestmark = pytest.mark.skipif(
    shutil.which("psql") is None, reason="psql (postgresql-client) is needed"
)


def railway_variables() -> dict[str, str]:
    """The test database as Railway's Postgres service names it (PG* variables)."""
    params = connection.settings_dict
    return {
        "PGHOST": params["HOST"] or "127.0.0.1",
        "PGPORT": str(params["PORT"] or 5432),
        "PGUSER": params["USER"],
        "PGPASSWORD": params["PASSWORD"] or "",
        "PGDATABASE": params["NAME"],
        "SECRET_KEY": "railway-test",
        "RAILWAY_PUBLIC_DOMAIN": "apm-production.up.railway.app",
        "RAILWAY_PRIVATE_DOMAIN": "apm.railway.internal",
    }


def sh(
    script: str, env: dict[str, str], interpreter: str = "/bin/sh"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [interpreter, "-c", script],
        cwd=ROOT,
        env={**BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_railway_json_builds_the_dockerfile_and_checks_readiness():
    assert RAILWAY["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
    assert (ROOT / RAILWAY["build"]["dockerfilePath"]).exists()
    deploy = RAILWAY["deploy"]
    assert resolve(deploy["healthcheckPath"]).url_name == "readyz"
    assert deploy["restartPolicyType"] in {"ON_FAILURE", "ALWAYS", "NEVER"}
    assert "setup_railway_env.sh" in (ROOT / "Dockerfile").read_text()
    for command in [deploy["startCommand"], *deploy["preDeployCommand"]]:
        assert command.startswith("/bin/sh -c '. /app/setup_railway_env.sh && exec apm-entrypoint ")
    assert '"[::]:${PORT:-8000}"' in deploy["startCommand"]


@pytest.mark.django_db
def test_setup_railway_env_turns_railways_variables_into_ours():
    result = sh(
        '. ./setup_railway_env.sh && echo "$DATABASE_URL" && echo "$ALLOWED_HOSTS" && '
        'echo "$CSRF_TRUSTED_ORIGINS" && echo "$USE_X_FORWARDED_PROTO" && '
        'psql "$DATABASE_URL" -XAtc "SELECT current_user"',
        railway_variables(),
    )
    assert result.returncode == 0, result.stderr
    url, hosts, origins, forwarded, user = result.stdout.splitlines()
    assert url.startswith("postgres://")
    assert hosts == "healthcheck.railway.app,apm-production.up.railway.app,apm.railway.internal"
    assert origins == "https://apm-production.up.railway.app"
    assert forwarded == "true"
    assert user == connection.settings_dict["USER"]


@pytest.mark.django_db
def test_setup_railway_env_percent_encodes_the_password_and_keeps_a_given_url():
    env = {**railway_variables(), "PGPASSWORD": "p@ss:w/rd?#%"}
    result = sh('. ./setup_railway_env.sh && echo "$DATABASE_URL"', env)
    assert result.stdout.strip().split("@")[0].endswith(":p%40ss%3Aw%2Frd%3F%23%25")
    given = sh(
        '. ./setup_railway_env.sh && echo "$DATABASE_URL"',
        {**env, "DATABASE_URL": "postgres://x/y"},
    )
    assert given.stdout.strip() == "postgres://x/y"


def test_setup_railway_env_fails_naming_what_is_missing():
    no_database = sh(". ./setup_railway_env.sh", {"SECRET_KEY": "x"})
    assert no_database.returncode != 0 and "no database" in no_database.stderr
    no_secret = sh(". ./setup_railway_env.sh", {"DATABASE_URL": "postgres://x/y"})
    assert no_secret.returncode != 0 and "SECRET_KEY is not set" in no_secret.stderr


@pytest.mark.django_db
def test_check_railway_db_reports_the_version_and_extensions():
    version = connection.cursor().connection.info.server_version
    result = sh("./check_railway_db.sh --json", railway_variables(), interpreter="bash")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["server_version_num"] == version
    assert set(report["extensions"]) <= {"vector", "timescaledb"}
    text = sh("./check_railway_db.sh", railway_variables(), interpreter="bash")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"PostgreSQL {report['server_version']} ")
    assert "  vector: " in text.stdout and "  timescaledb: " in text.stdout


def test_check_railway_db_fails_when_the_database_is_unreachable():
    env = {**railway_variables(), "PGHOST": "127.0.0.1", "PGPORT": "1", "PGCONNECT_TIMEOUT": "3"}
    result = sh("./check_railway_db.sh", env, interpreter="bash")
    assert result.returncode == 1
    assert "cannot query the database" in result.stderr


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory):
    """Secrets and certificates as `make secrets certs` makes them (once: it takes seconds)."""
    path = tmp_path_factory.mktemp("deployment")
    env = {
        "APM_SECRETS_DIR": str(path / "secrets"),
        "APM_CERTS_DIR": str(path / "certs"),
        "APM_SECRETS_GID": str(os.getgid()),
    }
    subprocess.run(
        [str(ROOT / "scripts/dev/bootstrap.sh")],
        env={**BASE_ENV, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return path


@pytest.fixture
def deployment(bootstrapped, tmp_path):
    """A copy of them for one test to break."""
    for name in ("secrets", "certs"):
        shutil.copytree(bootstrapped / name, tmp_path / name)
    env = {
        "APM_SECRETS_DIR": str(tmp_path / "secrets"),
        "APM_CERTS_DIR": str(tmp_path / "certs"),
        "DEPLOY_ENV_PORTS": str(ROOT / "docker/.env.ports.example"),
    }
    return tmp_path, env


def deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "deploy-production.sh"), "--dry-run"],
        env={**BASE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_deploy_dry_run_passes_its_preflight_and_prints_the_steps(deployment):
    _, env = deployment
    result = deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr
    planned = [line for line in result.stdout.splitlines() if line.startswith("+ (dry-run) ")]
    assert [line.split("--env-file")[-1].split()[1:3] for line in planned[:4]] == [
        ["pull", "--ignore-buildable"],
        ["build"],
        ["run", "--rm"],
        ["up", "-d"],
    ]
    assert "/readyz" in planned[-1]
    assert "nothing was changed" in result.stdout


def test_deploy_preflight_names_a_missing_secret(deployment):
    path, env = deployment
    (path / "secrets" / "db_writer_password").unlink()
    result = deploy(env)
    assert result.returncode == 1
    assert "db_writer_password: missing" in result.stderr


def test_deploy_preflight_refuses_a_secret_readable_by_others(deployment):
    path, env = deployment
    (path / "secrets" / "django_secret_key").chmod(0o644)
    result = deploy(env)
    assert result.returncode == 1 and "django_secret_key: readable by others" in result.stderr


def test_deploy_preflight_refuses_a_key_of_another_certificate(deployment):
    path, env = deployment
    subprocess.run(
        [
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(path / "certs" / "private.key"),
        ],
        check=True,
        capture_output=True,
    )
    result = deploy(env)
    assert result.returncode == 1 and "is not the key of" in result.stderr


def test_deploy_preflight_refuses_a_certificate_expiring_soon(deployment):
    _, env = deployment
    result = deploy({**env, "DEPLOY_CERT_MIN_DAYS": "100000"})
    assert result.returncode == 1 and "expires within 100000 days" in result.stderr
