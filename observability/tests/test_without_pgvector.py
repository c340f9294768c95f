"""The product on a PostgreSQL without pgvector (Debian's PostgreSQL 15, as the local
cluster runs): migrations choose array sketches, KPIs and percentiles are right, keyword
search works, semantic search says what is missing, and a system check reports it.

Real processes: the PostgreSQL 15 server, gunicorn, manage.py commands; data goes in and
answers come out over HTTP.
"""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from apm_platform.embedded_db import EmbeddedPostgres
from apm_platform.processes import BASE_DIR, Gunicorn, app_env, free_port, manage
from apm_platform.tests.system_processes import PG_BIN, requires_system_postgres
from observability.tests.analytics_data import reference
from observability.tests.test_kpis import assert_matches, iso

pytestmark = [pytest.mark.slow, requires_system_postgres]


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    server = EmbeddedPostgres(
        data_dir=tmp_path_factory.mktemp("pg15") / "pg", port=free_port(), bin_dir=PG_BIN
    )
    server.start()
    try:
        manage(server.url(), "migrate", "--verbosity", "0")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    gunicorn = Gunicorn(database.url(), tmp_path_factory.mktemp("metrics") / "m")
    yield gunicorn
    log = gunicorn.stop()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def api(database, server):
    key = manage(database.url(), "create_api_key", "--project", "nopgvector").strip()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


@pytest.fixture(scope="module")
def rows(database, api):
    """3,000 requests over the last two days, sent through the ingest API, rolled up."""
    rng = random.Random(11)
    now = datetime.now(UTC)
    rows = []
    for _ in range(3000):
        status = 503 if rng.random() < 0.05 else 200
        rows.append({
            "event_id": str(uuid.uuid4()),
            "time": now - timedelta(seconds=rng.uniform(3600, 2 * 86400)),
            "service": rng.choice(["checkout", "search"]), "endpoint": "/items/{id}",
            "method": "GET", "status_code": status,
            "latency_ms": round(rng.lognormvariate(4.5, 0.9), 3), "environment": "prod",
            "error_message": "database timeout" if status == 503 else "",
            "apdex_t_ms": 300.0,
        })  # fmt: skip
    events = [{k: iso(v) if k == "time" else v for k, v in row.items() if k != "apdex_t_ms"}
              for row in rows]  # fmt: skip
    for start in range(0, len(events), 1000):
        response = api.post("/api/v1/ingest/", json=events[start : start + 1000])
        assert response.status_code == 200, response.text
    manage(database.url(), "refresh_apirequest_hourly")
    manage(database.url(), "refresh_apirequest_daily")
    manage(database.url(), "embed_apirequests")
    return rows


def test_sketches_are_arrays_and_the_check_says_why(database, rows):
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=BASE_DIR, env=app_env(database.url()), capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert check.returncode == 0  # a warning, not an error
    assert "observability.W001" in check.stderr
    assert "no pgvector extension" in check.stderr


def test_kpis_over_rollups_and_raw_rows_equal_the_definition(api, rows):
    end = datetime.now(UTC)
    start = end - timedelta(days=3)

    answer = api.get("/api/v1/kpis/", params={"from": iso(start), "to": iso(end)}).json()

    assert_matches(answer, reference(rows, start, end))


def test_rankings_and_time_series_work(api, rows):
    ranked = api.get("/api/v1/top-endpoints/", params={"by": "p95"}).json()["results"]
    series = api.get("/api/v1/kpis/timeseries/", params={"interval": "hour"}).json()["results"]

    assert {row["service"] for row in ranked} == {"checkout", "search"}
    assert all(row["latency_ms"]["p95"] > 0 for row in ranked)
    assert sum(point["hits"] for point in series) == sum(
        row["time"] >= datetime.now(UTC) - timedelta(hours=24) for row in rows
    )


def test_keyword_search_works_and_semantic_search_names_the_extension(api, rows):
    keyword = api.get("/api/v1/search/", params={"q": "database timeout"})
    semantic = api.get("/api/v1/search/", params={"q": "slow payments", "mode": "semantic"})

    assert keyword.status_code == 200
    assert keyword.json()["mode"] == "keyword"
    assert keyword.json()["results"]
    assert all(hit["status_code"] == 503 for hit in keyword.json()["results"])
    assert semantic.status_code == 400
    assert "pgvector extension (vector)" in semantic.json()["errors"]["mode"][0]


def test_slo_status_reads_array_sketches(database, server, rows):
    """A latency SLO counts good requests from the array sketches (migration 0020's
    apm_sketch_count_at_most) as the pgvector form does from its inner product."""
    from observability.analytics import sketch

    key = manage(database.url(), "create_api_key", "--project", "nopgvector",
                 "--scopes", "read,admin").strip()  # fmt: skip
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers) as admin:
        created = admin.post("/api/v1/slos/", json={
            "name": "fast", "service": "checkout", "objective": "latency",
            "latency_threshold_ms": 120, "target": 99, "window_days": 7,
        })  # fmt: skip
        assert created.status_code == 201, created.text
        status = admin.get(f"/api/v1/slos/{created.json()['id']}/status/").json()
    at = datetime.fromisoformat(status["at"])
    chosen = [r for r in rows if r["service"] == "checkout" and r["time"] < at]
    good = sum(sketch.bucket_of(r["latency_ms"]) <= sketch.bucket_of(120) for r in chosen)
    assert status["counts"] == {"total": len(chosen), "good": good, "bad": len(chosen) - good}
