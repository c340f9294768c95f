"""`make run` end to end: migrate, seed, demo key, gunicorn, clean Ctrl-C.

Runs `manage.py run_demo` as a real process against a fresh database on the test
server, then talks to it over HTTP.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import connection
from psycopg import sql

from apm_platform.processes import free_port

pytestmark = pytest.mark.slow
BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch_database_url(django_db_blocker):
    """A new, empty database on the test server; dropped afterwards."""
    params = connection.settings_dict
    name = f"apm_run_demo_{uuid.uuid4().hex[:8]}"
    admin = psycopg.conninfo.make_conninfo(
        host=params["HOST"],
        port=params["PORT"],
        user=params["USER"],
        password=params["PASSWORD"] or None,
        dbname="postgres",
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    yield f"postgres://{params['USER']}{password}@{params['HOST']}:{params['PORT']}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def start_run_demo(database_url: str, key_file: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "apm_platform.ci_settings",
        "DATABASE_URL": database_url,
        "APM_DEMO_KEY_FILE": str(key_file),
        "APM_DEMO_LOGIN_FILE": str(key_file.parent / "demo-login"),
        # As `make run` on the embedded database: DEBUG, so that the session cookie is
        # not Secure and the UI signs in over plain HTTP.
        "DEBUG": "true",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_demo",
            "--port",
            str(port),
            "--seed-count",
            "3000",
            "--seed-days",
            "2",
        ],
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(base: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"run_demo exited early:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail("run_demo did not become ready")


def ctrl_c(process: subprocess.Popen) -> str:
    """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


def test_run_demo_serves_seeded_data_with_the_demo_key_and_stops_cleanly(
    scratch_database_url, tmp_path
):
    key_file, port = tmp_path / "demo-api-key", free_port()
    base = f"http://127.0.0.1:{port}"

    process = start_run_demo(scratch_database_url, key_file, port)
    try:
        wait_ready(base, process)
        key = key_file.read_text().strip()
        response = httpx.get(
            f"{base}/api/v1/requests/?service=checkout&page_size=5",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200
        assert {row["service"] for row in response.json()["results"]} == {"checkout"}
        assert httpx.get(f"{base}/api/docs/").status_code == 200
        # `/` is the UI: its login page when signed out; the demo user signs in.
        assert httpx.get(f"{base}/").headers["location"] == "/login/"
        username, password = (tmp_path / "demo-login").read_text().split()
        with httpx.Client(base_url=base) as browser:
            browser.get("/login/")
            signed_in = browser.post("/login/", data={
                "username": username, "password": password,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            })  # fmt: skip
            assert signed_in.status_code == 302, signed_in.text
            assert browser.get("/").headers["location"] == "/p/demo/"
            assert browser.get("/p/demo/").status_code == 200
        # Metrics from both gunicorn workers, aggregated through the multiprocess directory.
        metrics = httpx.get(f"{base}/metrics").text
        assert (
            'apm_http_requests_total{method="GET",status="200",view="request-list"} 1.0' in metrics
        )
    finally:
        output = ctrl_c(process)
    assert process.returncode == 0, output
    assert key in output  # printed for the user
    assert f"sign in as {username} / {password}" in output

    # A second start reuses the key and does not seed again.
    process = start_run_demo(scratch_database_url, key_file, port)
    try:
        wait_ready(base, process)
        assert key_file.read_text().strip() == key
        assert (tmp_path / "demo-login").read_text().split() == [username, password]
    finally:
        output = ctrl_c(process)
    assert "seeded 3000 requests" not in output
    with psycopg.connect(scratch_database_url.replace("postgres://", "postgresql://")) as conn:
        assert conn.execute("SELECT count(*) FROM api_request").fetchone()[0] == 3000
