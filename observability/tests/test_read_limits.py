"""Reads that stay bounded and in their project (issue 11): parameter hygiene, window
bounds, scopes, the read rate limit, statement timeouts, what /readyz tells whom, the
admin login throttle and the production settings' deploy check."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import pytest
from django.test import Client

from apm_platform.processes import BASE_DIR, Gunicorn, app_env, manage, scratch_postgres
from observability.tests.utils import client_with, make_key, make_request

pytestmark = pytest.mark.django_db


# --- Window arithmetic and parameters ----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/v1/kpis/?to=0001-01-01T00:00:00Z", "to"),
        ("/api/v1/kpis/?to=9999-12-31T23:00:00-05:00", "to"),
        ("/api/v1/kpis/timeseries/?from=9999-12-31T00:00:00Z", "from"),
        ("/api/v1/requests/?to=0108-01-01T00:00:00Z&method=%C3%89T%C3%89", "to"),
        ("/api/v1/search/?q=cart&from=0001-01-01", "from"),
        ("/api/v1/kpis/?to=", "to"),
        ("/api/v1/requests/?service=", "service"),
        ("/api/v1/requests/?page_size=null", "page_size"),
        ("/api/v1/requests/?page_size=", "page_size"),
        ("/api/v1/requests/?page_size=1001", "page_size"),
        ("/api/v1/requests/?cursor=", "cursor"),
        ("/api/v1/endpoints/?page_size=0", "page_size"),
        ("/api/v1/search/?q=a%00b", "q"),
        ("/api/v1/kpis/?service=shop%00", "service"),
        ("/api/v1/top-endpoints/?by=p95&limit=", "limit"),
    ],
)
def test_out_of_range_empty_or_mistyped_parameters_are_400_naming_them(api, url, parameter):
    response = api.get(url)

    assert response.status_code == 400, response.content
    assert parameter in response.json()["errors"], response.json()


def test_the_last_supported_bucket_is_served(api):
    response = api.get(
        "/api/v1/kpis/timeseries/?from=8999-12-31T00:00:00Z&to=9000-01-01T00:00:00Z&interval=hour"
    )

    assert response.status_code == 200
    assert len(response.json()["results"]) == 24


def test_the_schema_bounds_what_the_server_bounds(client):
    schema = client.get("/api/schema/?format=json").json()
    search = {p["name"]: p for p in schema["paths"]["/api/v1/search/"]["get"]["parameters"]}
    requests = {p["name"]: p for p in schema["paths"]["/api/v1/requests/"]["get"]["parameters"]}

    assert search["q"]["schema"] == {"type": "string", "minLength": 1, "maxLength": 500}
    assert search["limit"]["schema"] == {
        "type": "integer", "minimum": 1, "maximum": 100, "default": 10,
    }  # fmt: skip
    assert requests["page_size"]["schema"]["maximum"] == 1000


# --- Scopes --------------------------------------------------------------------------------


def test_deleting_needs_the_admin_scope(project):
    row = make_request(project)
    ingest_only = client_with(make_key(project, scopes=["ingest", "read"], name="service"))
    admin = client_with(make_key(project, scopes=["read", "admin"], name="operator"))

    refused = ingest_only.delete(f"/api/v1/requests/{row.event_id}/")
    deleted = admin.delete(f"/api/v1/requests/{row.event_id}/")

    assert refused.status_code == 403
    assert "'admin' scope" in refused.json()["detail"]
    assert deleted.status_code == 204


# --- Read rate limit ---------------------------------------------------------------------


def test_reads_past_the_key_rate_limit_are_429_with_retry_after(project, settings):
    settings.APM_READ_RATE_LIMIT, settings.APM_READ_RATE_BURST = 1, 2
    reader = client_with(make_key(project, scopes=["read"]))

    statuses = [reader.get("/api/v1/kpis/").status_code for _ in range(3)]
    refused = reader.get("/api/v1/kpis/")

    assert statuses[:2] == [200, 200]
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    other = client_with(make_key(project, scopes=["read"], name="another key"))
    assert other.get("/api/v1/kpis/").status_code == 200  # per key


# --- What /readyz tells whom -------------------------------------------------------------


def test_readyz_details_are_for_the_monitoring_path_only():
    monitoring = Client(REMOTE_ADDR="10.0.4.2").get("/readyz").json()
    public = Client(REMOTE_ADDR="93.184.216.34").get("/readyz").json()
    proxied = Client(REMOTE_ADDR="10.0.4.3").get("/readyz", HTTP_X_FORWARDED_FOR="93.184.216.34")

    assert "checks" in monitoring
    assert public == {"status": "ok"}
    assert proxied.json() == {"status": "ok"}


# --- Admin login throttle ------------------------------------------------------------------


def test_admin_logins_are_throttled_after_repeated_failures(settings, django_user_model):
    settings.APM_LOGIN_MAX_FAILURES = 3
    django_user_model.objects.create_superuser("root", "root@example.com", "right-password")
    client = Client()
    form = {"username": "root", "password": "wrong", "next": "/admin/"}

    failures = [client.post("/admin/login/", form).status_code for _ in range(3)]
    blocked = client.post("/admin/login/", {**form, "password": "right-password"})

    assert failures == [200, 200, 200]  # the form again, with an error
    assert blocked.status_code == 429
    assert blocked["Retry-After"]


# --- Production settings: the deploy check ----------------------------------------------


def test_the_production_settings_pass_the_deploy_check():
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "apm_platform.settings", "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "apm.example.com",
        "DATABASE_URL": "postgres://apm@127.0.0.1:1/apm", "USE_X_FORWARDED_PROTO": "true",
        "CSRF_TRUSTED_ORIGINS": "https://apm.example.com",
    }  # fmt: skip

    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert check.returncode == 0, check.stderr
    assert "no issues" in check.stdout


# --- Statement timeouts, and queries of killed workers ------------------------------------


@pytest.mark.slow
def test_an_api_query_past_the_statement_timeout_is_a_clear_503(tmp_path):
    with scratch_postgres(tmp_path) as database:
        key = manage(database.url(), "create_api_key", "--project", "slow").strip()
        manage(database.url(), "seed_apirequests", "--project", "slow", "--count", "30000",
               "--days", "2", "--seed", "1")  # fmt: skip
        server = Gunicorn(database.url(), tmp_path / "metrics", APM_API_STATEMENT_TIMEOUT_MS="1")
        try:
            response = httpx.get(
                f"{server.url}/api/v1/kpis/?interval=minute",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
        finally:
            server.stop()

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "query_timeout"
    assert "1 ms" in body["detail"] and "APM_API_STATEMENT_TIMEOUT_MS" in body["detail"]


@pytest.mark.slow
def test_the_query_of_a_killed_worker_does_not_run_on(tmp_path):
    """A bounded session checks its client while a query runs: killing the client ends
    the query within seconds (here a 60 s sleep)."""
    with scratch_postgres(tmp_path) as database:
        code = (
            "import psycopg, sys\n"
            "from apm_platform.db_timeouts import SESSION_SETTINGS, CLIENT_CHECK_INTERVAL\n"
            "with psycopg.connect(sys.argv[1], application_name='doomed') as conn:\n"
            "    conn.execute(SESSION_SETTINGS, ['120s', CLIENT_CHECK_INTERVAL])\n"
            "    conn.execute('SELECT pg_sleep(60)')\n"
        )
        client = subprocess.Popen(
            [sys.executable, "-c", code, database.url()], cwd=BASE_DIR, env=app_env(database.url())
        )
        with psycopg.connect(database.url(), autocommit=True) as monitor:
            wait_until(lambda: running(monitor) == 1)
            client.send_signal(signal.SIGKILL)
            client.wait(timeout=30)
            killed_at = time.monotonic()
            wait_until(lambda: running(monitor) == 0, timeout=30)
            gone_after = time.monotonic() - killed_at

    assert gone_after < 30  # the interval is 5 s; without it: the full 60 s


def running(monitor) -> int:
    return monitor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'doomed' "
        "AND state = 'active'"
    ).fetchone()[0]


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
