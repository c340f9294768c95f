"""`make bench-ui`: the UI's pages and fragments on the `make bench-kpi` data (10 million
requests over 30 days), its page weight, and a chart of 10,000 points.

One run: the KPI benchmark's loader (scripts/bench/kpi.py) fills a scratch PostgreSQL;
the loaded 5xx are grouped as ingest groups a 5xx without a message (one group per
service, endpoint and method, its hours, endpoints and requests), beside a long tail of
LONG_TAIL_GROUPS groups seen in one hour each (many small problems: the list's cost);
a user signs in over HTTP to gunicorn (2 workers), then each page and each htmx fragment
at the 30-day range is fetched `--runs` times: p50/p95 of the response time on loopback
(an upper bound of the server time). The JavaScript and CSS the first page load fetches
are measured as gzip (level 6) would send them. Chromium (Playwright) opens a Service
page with 10,000 one-minute points and reports what its latency chart drew and how long
drawing took. Writes reports/bench/ui.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx

from apm_platform.processes import Gunicorn
from scripts.bench.kpi import dataset, percentile, timed_gets
from scripts.bench.report import REPORTS, write_report

USERNAME, PASSWORD = "bench", "bench-ui-password"
LONG_TAIL_GROUPS = 5000
BUDGET_MS, BUDGET_BYTES, CHART_POINTS = 150, 300 * 1024, 10_000
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]  # fmt: skip


def prepare_accounts(project_id: int) -> None:
    """The benchmark's user (an admin of the project), and the dimension values ingest
    would have admitted (the loader writes with COPY, past the caps)."""
    from django.contrib.auth.models import User
    from django.db import connection

    from observability.models import Dimension, DimensionValue, Membership, Role

    user = User.objects.create_user(USERNAME, password=PASSWORD)
    Membership.objects.create(user=user, project_id=project_id, role=Role.ADMIN)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT service, endpoint, environment FROM apm_rollup_endpoint_daily "
            "WHERE project_id = %s", [project_id]
        )  # fmt: skip
        seen = cursor.fetchall()
    values = {(Dimension.SERVICE, "", s) for s, _, _ in seen}
    values |= {(Dimension.ENVIRONMENT, "", env) for _, _, env in seen}
    values |= {(Dimension.ENDPOINT, s, e) for s, e, _ in seen}
    DimensionValue.objects.bulk_create(
        DimensionValue(project_id=project_id, dimension=d, scope=scope, value=v)
        for d, scope, v in values
    )


# The loader writes with COPY, past ingest: its 5xx get the groups ingest would give a
# 5xx without a message (kind `status`: service, endpoint and status code).
ERROR_GROUPS = """
INSERT INTO apm_error_group (project_id, fingerprint, version, kind, service, endpoint, title,
                             exception_type, stacktrace, status, first_seen, last_seen, count,
                             times_reopened, created_at)
SELECT %(project)s, encode(sha256(convert_to(service || ' ' || method || ' ' || endpoint
                                             || ' ' || status_code, 'UTF8')), 'hex'),
       1, 'status', service, endpoint, 'HTTP ' || status_code, '', '', 'open', min(time),
       max(time), count(*), 0, now()
FROM api_request WHERE project_id = %(project)s AND status_code >= 500
GROUP BY service, method, endpoint, status_code
"""
GROUP_REQUESTS = """
UPDATE api_request AS r SET error_group_id = g.id FROM apm_error_group AS g
WHERE r.project_id = %(project)s AND r.status_code >= 500 AND g.project_id = %(project)s
  AND g.fingerprint = encode(sha256(convert_to(r.service || ' ' || r.method || ' '
                                               || r.endpoint || ' ' || r.status_code, 'UTF8')),
                             'hex')
"""
GROUP_HOURS = """
INSERT INTO apm_error_group_hour (group_id, bucket, count)
SELECT error_group_id, date_trunc('hour', time), count(*) FROM api_request
WHERE project_id = %(project)s AND error_group_id IS NOT NULL GROUP BY 1, 2
"""
GROUP_ENDPOINTS = """
INSERT INTO apm_error_group_endpoint (group_id, endpoint, method, count, last_seen)
SELECT error_group_id, endpoint, method, count(*), max(time) FROM api_request
WHERE project_id = %(project)s AND error_group_id IS NOT NULL GROUP BY 1, 2, 3
"""
# Many small problems, each seen in one hour of the 30 days (no stored request).
LONG_TAIL = """
WITH tail AS (
    SELECT n, date_trunc('hour', now() - (n %% 720) * interval '1 hour') AS hour,
           1 + n %% 3 AS count
    FROM generate_series(1, %(groups)s) AS n
), created AS (
    INSERT INTO apm_error_group (project_id, fingerprint, version, kind, service, endpoint,
                                 title, exception_type, stacktrace, status, first_seen,
                                 last_seen, count, times_reopened, created_at)
    SELECT %(project)s, md5('tail ' || n), 1, 'message',
           'service-' || lpad((n %% 20)::text, 2, '0'), '/api/v1/tail/{id}',
           'tail problem ' || n || ' failed', '', '', 'open',
           hour + interval '10 minutes', hour + interval '20 minutes', count, 0, now()
    FROM tail RETURNING id, first_seen, count
)
INSERT INTO apm_error_group_hour (group_id, bucket, count)
SELECT id, date_trunc('hour', first_seen), count FROM created
"""


def prepare_error_groups(url: str, project_id: int) -> int:
    """The bench data's error groups (see ERROR_GROUPS and LONG_TAIL); how many."""
    import psycopg

    params = {"project": project_id, "groups": LONG_TAIL_GROUPS}
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for statement in (ERROR_GROUPS, GROUP_REQUESTS, GROUP_HOURS, GROUP_ENDPOINTS,
                              LONG_TAIL):  # fmt: skip
                conn.execute(statement, params)
        conn.execute("VACUUM ANALYZE")
        return conn.execute(
            "SELECT count(*) FROM apm_error_group WHERE project_id = %s", [project_id]
        ).fetchone()[0]


def signed_in(base_url: str) -> httpx.Client:
    """A client with a session. The server runs as in production (DEBUG off), so its
    cookies are Secure, which a client does not send back over plain HTTP: this one
    sends them itself (loopback only)."""
    client = httpx.Client(base_url=base_url, timeout=120, follow_redirects=False)

    def cookie_header() -> dict:
        return {"Cookie": "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)}

    client.get("/login/").raise_for_status()
    response = client.post("/login/", headers=cookie_header(), data={
        "username": USERNAME, "password": PASSWORD,
        "csrfmiddlewaretoken": client.cookies["csrftoken"],
    })  # fmt: skip
    if response.status_code != 302:
        raise RuntimeError(f"sign-in failed: {response.status_code}")
    client.headers.update(cookie_header())
    return client


def timed_page(client: httpx.Client, path: str, runs: int, htmx: bool = False) -> dict:
    headers = {"HX-Request": "true"} if htmx else {}
    for _ in range(5):  # warm up both workers
        client.get(path, headers=headers).raise_for_status()
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        response = client.get(path, headers=headers)
        timings.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    return {
        "p50_ms": round(percentile(timings, 50), 1),
        "p95_ms": round(percentile(timings, 95), 1),
    }


def page_weight(client: httpx.Client, path: str) -> dict:
    """The scripts and style sheets a page loads: bytes, and bytes as gzip sends them."""
    html = client.get(path).text
    assets = re.findall(r'<script src="([^"]+)"', html)
    assets += re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    raw = compressed = 0
    for asset in assets:
        body = client.get(asset).raise_for_status().content
        raw += len(body)
        compressed += len(gzip.compress(body, compresslevel=6))
    return {"files": len(assets), "bytes": raw, "gzip_bytes": compressed}


def chart_points(base_url: str, path: str) -> dict:
    """What the latency chart of `path` drew in Chromium, and how long it took."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        # localhost, where Chromium keeps and sends Secure cookies over plain HTTP.
        base_url = base_url.replace("127.0.0.1", "localhost")
        page.goto(f"{base_url}/login/")
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        began = time.perf_counter()
        page.goto(base_url + path, timeout=300_000)
        # The latency chart arrives in a fragment (minute points are read from raw rows).
        page.wait_for_function("window.apmCharts && window.apmCharts.latency", timeout=300_000)
        load_s = time.perf_counter() - began
        drawn = page.evaluate("window.apmCharts.latency")
        browser.close()
    return {"points": drawn["points"], "series": drawn["series"],
            "draw_ms": round(drawn["drawMs"], 1), "page_load_s": round(load_s, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--output", default=str(REPORTS / "ui.json"))
    args = parser.parse_args()

    with dataset(args.rows) as data:
        from django.db import connections

        from observability.analytics.queries import Filters, KpiQuery, Window

        prepare_accounts(data.project_id)
        print("grouping the 5xx...", file=sys.stderr)
        error_groups = prepare_error_groups(data.url, data.project_id)
        now = datetime.now(UTC)
        busiest_endpoint = KpiQuery(
            data.project_id, Window(now - timedelta(days=30), now),
            Filters(service=data.busiest), connections["default"],
        ).top_endpoints("hits", 1, 1)[0]  # fmt: skip
        endpoint = {k: busiest_endpoint[k] for k in ("service", "endpoint", "method")}
        from observability.models import ApiRequest, ErrorGroup

        newest = ApiRequest.objects.filter(project_id=data.project_id).order_by("-time").first()
        busiest_group = ErrorGroup.objects.filter(project_id=data.project_id).order_by("-count")[0]
        connections.close_all()

        server = Gunicorn(data.url, data.scratch / "metrics", workers=2,
                          DATABASE_CONN_MAX_AGE="60")  # fmt: skip
        try:
            client = signed_in(server.url)
            base, month = "/p/bench", "range=30d"
            service = urlencode({"service": data.busiest})
            paths = {
                "overview": (f"{base}/?{month}", False),
                "service": (f"{base}/service/?{month}&{service}", False),
                "service_endpoints_fragment": (
                    f"{base}/service/endpoints/?{month}&{service}&sort=p95", True),
                "service_traffic_fragment": (
                    f"{base}/charts/?{month}&{service}&part=traffic", True),
                "service_latency_fragment": (
                    f"{base}/charts/?{month}&{service}&part=latency", True),
                "endpoint": (f"{base}/endpoint/?{month}&{urlencode(endpoint)}", False),
                "endpoint_traffic_fragment": (
                    f"{base}/charts/?{month}&{urlencode(endpoint)}&part=traffic", True),
                "endpoint_latency_fragment": (
                    f"{base}/charts/?{month}&{urlencode(endpoint)}&part=latency", True),
                "requests": (f"{base}/requests/?{month}", False),
                "requests_filtered": (f"{base}/requests/?{month}&{service}&status_class=5xx",
                                      False),
                "request_rows_fragment": (f"{base}/requests/rows/?{month}&{service}", True),
                "request": (f"{base}/requests/{newest.event_id}/?{month}", False),
                "request_similar_fragment": (
                    f"{base}/requests/{newest.event_id}/similar/?{month}", True),
                "search": (f"{base}/search/?{month}&q=resource1", False),
                "settings": (f"{base}/settings/", False),
                "errors": (f"{base}/errors/?{month}", False),
                "errors_table_fragment": (f"{base}/errors/table/?{month}&sort=count", True),
                "errors_filtered": (f"{base}/errors/?{month}&{service}&status=open", False),
                "error_group": (f"{base}/errors/{busiest_group.pk}/?{month}", False),
            }  # fmt: skip
            pages = {}
            for name, (path, htmx) in paths.items():
                print(f"timing {name}...", file=sys.stderr)
                pages[name] = timed_page(client, path, args.runs, htmx)
            weight = page_weight(client, paths["service"][0])
            # For the record: the API's own answer time on the same server and data.
            api_key = {"Authorization": f"Bearer {data.key}"}
            window = {"from": (now - timedelta(days=30)).isoformat(), "to": now.isoformat()}
            with httpx.Client(base_url=server.url, timeout=120, headers=api_key) as api:
                series = {**window, "service": data.busiest}
                (api_ms,), _ = timed_gets([api], "/api/v1/kpis/timeseries/", series, args.runs)
            end = datetime.now(UTC).replace(second=0, microsecond=0)
            dense = urlencode({"range": "custom", "interval": "minute", "service": data.busiest,
                               "from": (end - timedelta(minutes=CHART_POINTS)).isoformat(),
                               "to": end.isoformat()})  # fmt: skip
            print("drawing a chart of 10,000 points...", file=sys.stderr)
            chart = chart_points(server.url, f"{base}/service/?{dense}")
        finally:
            server.stop()

    slowest = max(pages.values(), key=lambda timing: timing["p95_ms"])
    result = {
        "raw_rows": data.rows,
        "range_days": 30,
        "runs": args.runs,
        "error_groups": error_groups,
        "pages": pages,
        "max_page_p95_ms": slowest["p95_ms"],
        "within_150ms": slowest["p95_ms"] <= BUDGET_MS,
        "api_timeseries_busiest_service_p95_ms": round(percentile(api_ms, 95), 1),
        "first_load_js_css": weight,
        "first_load_within_300kb": weight["gzip_bytes"] <= BUDGET_BYTES,
        "chart": chart,
        "chart_within_10k_points": chart["points"] >= CHART_POINTS,
    }
    write_report(result, Path(args.output))


if __name__ == "__main__":
    main()
