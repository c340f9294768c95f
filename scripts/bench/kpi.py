"""`make bench-kpi`: KPI query latency on 10 million requests, against raw SQL.

One run: a scratch embedded PostgreSQL; 10,000,000 requests over 30 days loaded with
COPY (20 services x 10 endpoints, Zipf-distributed traffic, day/night cycle, log-normal
latencies per endpoint); rollups refreshed; then, through HTTP (gunicorn, 2 workers),
p50/p95 latency of /api/v1/kpis/ (30 days, the busiest service), of
/api/v1/kpis/timeseries/?interval=hour (30 days) and /api/v1/top-endpoints/?by=p95
(30 days), and the same one-service KPIs computed from raw rows with plain SQL. Also the
time to refresh one new hour (~14,000 rows), rollup size against raw size, and the
largest relative error of the API's percentiles against exact percentile_disc.
Writes reports/bench/kpi.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg

from apm_platform.processes import (
    Gunicorn,
    manage,
    scratch_postgres,
)
from scripts.bench.report import REPORTS, describe, write_report

SERVICES, ENDPOINTS_PER_SERVICE, DAYS = 20, 10, 30
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
COLUMNS = ("time", "project_id", "service", "endpoint", "method", "status_code", "latency_ms",
           "event_id", "environment", "apdex_t_ms")  # fmt: skip
# Binary COPY wire formats: timestamptz is int64 microseconds since 2000-01-01 UTC, a
# uuid its 16 bytes, so the loader can pass numpy integers and raw bytes directly.
COPY_TYPES = ("int8", "int8", "text", "text", "text", "int2", "float8", "bytea", "text", "float4")


class Traffic:
    """200 endpoints, Zipf-distributed (s = 1.1), each with its own latency profile (other
    benchmarks choose their count, names and Zipf exponent: 0 is uniform)."""

    def __init__(self, seed: int = 42, services: int = SERVICES,
                 per_service: int = ENDPOINTS_PER_SERVICE, prefix: str = "service",
                 zipf: float = 1.1):  # fmt: skip
        self.rng = np.random.default_rng(seed)
        count = services * per_service
        ranks = self.rng.permutation(count) + 1
        self.weights = 1 / ranks**zipf
        self.weights /= self.weights.sum()
        self.service = np.array([f"{prefix}-{i // per_service:02d}" for i in range(count)])
        self.endpoint = np.array(
            [f"/api/v1/resource{i % per_service}/{{id}}" for i in range(count)]
        )
        self.method = np.where(np.arange(count) % 3 == 0, "POST", "GET")
        self.median_ms = np.exp(self.rng.uniform(np.log(5), np.log(800), count))
        self.sigma = self.rng.uniform(0.3, 1.1, count)
        self.error_rate = self.rng.uniform(0.0, 0.04, count)

    def hour(self, start: datetime, rows: int, project_id: int, seconds: int = 3600):
        """The rows of one hour (or of `seconds` from `start`), as COPY tuples."""
        rng, n = self.rng, rows
        which = rng.choice(len(self.weights), size=n, p=self.weights)
        offsets = rng.integers(0, seconds * 1_000_000, size=n)
        base_us = int((start - PG_EPOCH).total_seconds() * 1_000_000)
        latency = np.round(rng.lognormal(np.log(self.median_ms[which]), self.sigma[which]), 3)
        status = np.where(rng.random(n) < self.error_rate[which], 503,
                          np.where(rng.random(n) < 0.03, 404, 200))  # fmt: skip
        event_ids = rng.bytes(16 * n)
        return zip(
            (base_us + offsets).tolist(), [project_id] * n, self.service[which].tolist(),
            self.endpoint[which].tolist(), self.method[which].tolist(), status.tolist(),
            latency.tolist(), [event_ids[i : i + 16] for i in range(0, 16 * n, 16)],
            ["production"] * n, [300.0] * n, strict=True,
        )  # fmt: skip


def diurnal(hour: int) -> float:
    return 0.35 + 0.65 * np.sin(np.pi * ((hour - 3) % 24) / 24) ** 2


def load(url: str, traffic: Traffic, project_id: int, start: datetime, hours: int,
         total: int) -> int:  # fmt: skip
    shares = np.array([diurnal((start + timedelta(hours=h)).hour) for h in range(hours)])
    per_hour = np.round(shares / shares.sum() * total).astype(int)
    loaded = 0
    with psycopg.connect(url) as conn:
        for h, rows in enumerate(per_hour):
            copy(conn, traffic.hour(start + timedelta(hours=h), int(rows), project_id))
            loaded += int(rows)
            if h % 120 == 0:
                print(f"  loaded {loaded:,} rows", file=sys.stderr)
    return loaded


def copy(conn: psycopg.Connection, rows) -> None:
    """COPY Traffic.hour's tuples into api_request, in one transaction."""
    copy_sql = f"COPY api_request ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with conn.transaction(), conn.cursor() as cursor, cursor.copy(copy_sql) as copying:
        copying.set_types(COPY_TYPES)
        for row in rows:
            copying.write_row(row)


def timed_gets(clients: list[httpx.Client], url: str, params: dict, runs: int):
    """Milliseconds per GET for each client (one per server), the clients taking turns
    so that every server meets the same machine; and the first client's last answer."""
    for client in clients:
        for _ in range(10):  # warm up every worker (each has its own connections, caches)
            client.get(url, params=params)
    timings: list[list[float]] = [[] for _ in clients]
    answer: dict = {}
    for run in range(runs):
        order = list(enumerate(clients))
        for n, client in order if run % 2 else reversed(order):
            began = time.perf_counter()
            response = client.get(url, params=params)
            timings[n].append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
            if n == 0:
                answer = response.json()
    return timings, answer


RAW_KPI_SQL = """
SELECT count(*), count(*) FILTER (WHERE status_code >= 500), avg(latency_ms), max(latency_ms),
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms),
       (count(*) FILTER (WHERE status_code < 500 AND latency_ms <= apdex_t_ms)
        + count(*) FILTER (WHERE status_code < 500 AND latency_ms > apdex_t_ms
                           AND latency_ms <= 4 * apdex_t_ms) / 2.0) / count(*)
FROM api_request
WHERE project_id = %(project)s AND time >= %(start)s AND time < %(end)s {extra}
"""


def raw_kpis(conn, params: dict, extra: str = "") -> tuple:
    return conn.execute(RAW_KPI_SQL.format(extra=extra), params).fetchone()


def relative_errors(api_latency: dict, exact: list[float]) -> list[float]:
    return [abs(api_latency[q] - e) / e for q, e in zip(("p50", "p95", "p99"), exact, strict=True)]


def latencies(prefix: str, kpi: list[float], series: list[float], top: list[float]) -> dict:
    return {
        f"{prefix}{name}_p{q}_ms": round(percentile(values, q), 1)
        for name, values in (("kpi", kpi), ("timeseries", series), ("top_endpoints", top))
        for q in (50, 95)
    }


def same_data(url: str, code_dir: Path, data) -> str:
    """Load the compared checkout's database with the very same traffic (the generator is
    seeded), refreshed by its own commands; returns its API key. Its schema is its own,
    so only its own manage.py touches it besides the COPY."""
    key = manage(url, "create_api_key", "--project", "bench", code_dir=code_dir).strip()
    # Its daily partitions, made by its own code (seeding nothing).
    manage(url, "seed_apirequests", "--count", "0", "--days", str(DAYS + 2),
           "--project", "bench", code_dir=code_dir)  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        project_id = conn.execute("SELECT id FROM apm_project WHERE slug = 'bench'").fetchone()[0]
    traffic, hours = Traffic(), DAYS * 24
    loaded = load(url, traffic, project_id, data.start, hours, data.rows - data.rows // 721)
    load(url, traffic, project_id, data.new_hour, 1, data.rows - loaded)
    for command in ("refresh_apirequest_hourly", "refresh_apirequest_daily"):
        manage(url, command, code_dir=code_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return key


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclasses.dataclass
class Dataset:
    """The benchmark's database: 10M requests over 30 days, rollups refreshed."""

    url: str
    scratch: Path
    key: str  # an API key of the project (read and ingest)
    project_id: int
    busiest: str  # the service with the most requests
    rows: int
    load_s: float
    initial_refresh_s: float
    refresh_hour_s: float
    raw_bytes: int
    rollup_bytes: int
    start: datetime  # of the traffic, DAYS before the last closed hour
    new_hour: datetime  # the last closed hour, loaded after the others


@contextlib.contextmanager
def dataset(rows: int) -> Iterator[Dataset]:
    """A scratch PostgreSQL loaded with `rows` requests over DAYS days, rollups refreshed
    (also timed: the initial refresh, and one new hour's). Sets up Django on it in this
    process. Used by the UI benchmark too."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "apm_platform.ci_settings"
    with tempfile.TemporaryDirectory(prefix="bench-kpi-") as scratch, \
            scratch_postgres(Path(scratch)) as database:  # fmt: skip
        url = database.url()
        key = manage(url, "create_api_key", "--project", "bench").strip()
        # This process runs the refreshes itself (timed in-process, as run_jobs runs them).
        os.environ["DATABASE_URL"] = url
        import django

        django.setup()
        from django.db import connection

        from observability import jobs
        from observability.analytics import backend

        with psycopg.connect(url, autocommit=True) as conn:
            project_id = conn.execute("SELECT id FROM apm_project WHERE slug = 'bench'").fetchone()[
                0
            ]
        now = datetime.now(UTC)
        # Everything up to the last closed hour; the bench then adds that hour as "new".
        new_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        start = new_hour - timedelta(days=DAYS)
        hours = DAYS * 24
        traffic = Traffic()
        backend.of(connection).prepare_partitions(
            connection, start.date(), now.date() + timedelta(days=1)
        )
        print(f"loading {rows:,} rows over {DAYS} days...", file=sys.stderr)
        began = time.perf_counter()
        per_hour_rows = rows / hours
        loaded = load(url, traffic, project_id, start, hours, rows)
        load_s = time.perf_counter() - began
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE api_request")

        began = time.perf_counter()
        jobs.refresh("hour", now=new_hour + timedelta(minutes=5))
        jobs.refresh("day", now=new_hour + timedelta(minutes=5))
        initial_refresh_s = time.perf_counter() - began

        # One new hour of traffic, then the incremental refresh that picks it up.
        load(url, traffic, project_id, new_hour, 1, int(per_hour_rows))
        began = time.perf_counter()
        report = jobs.refresh("hour", now=new_hour + timedelta(hours=1, minutes=5))
        refresh_hour_s = time.perf_counter() - began
        if report.buckets == 0:  # None: TimescaleDB refreshed without saying how much
            raise RuntimeError(f"the new hour was not refreshed: {report}")

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            busiest = conn.execute(
                "SELECT service FROM apm_rollup_service_daily "
                "GROUP BY 1 ORDER BY sum(hits) DESC LIMIT 1"
            ).fetchone()[0]
            raw_bytes = conn.execute(
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                "WHERE inhparent = 'api_request'::regclass"
            ).fetchone()[0]
            rollup_bytes = conn.execute(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                "WHERE c.relkind = 'r' AND c.relname LIKE 'apm_rollup\\_%%\\_%%ly'"
            ).fetchone()[0]
        yield Dataset(url, Path(scratch), key, project_id, busiest, loaded + int(per_hour_rows),
                      load_s, initial_refresh_s, refresh_hour_s, int(raw_bytes),
                      int(rollup_bytes), start, new_hour)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--output", default=str(REPORTS / "kpi.json"))
    parser.add_argument(
        "--compare-with", type=Path, default=None, metavar="CHECKOUT",
        help="Another checkout of the project (e.g. a git worktree of the code before a "
        "change): the same seeded traffic in a database its own code migrated and refreshed, "
        "served by its gunicorn, answering the same queries in turns with this one; the "
        "report adds its figures and the ratios.",
    )  # fmt: skip
    args = parser.parse_args()

    with dataset(args.rows) as data, contextlib.ExitStack() as stack:
        url, key, project_id, busiest = data.url, data.key, data.project_id, data.busiest
        end = datetime.now(UTC)
        window = {"from": (end - timedelta(days=DAYS)).isoformat(), "to": end.isoformat()}
        # The read rate limit stays on (its cost is part of each request) but never binds.
        env = {"DATABASE_CONN_MAX_AGE": "60", "APM_READ_RATE_LIMIT": "1000000",
               "APM_READ_RATE_BURST": "1000000"}  # fmt: skip
        servers = [Gunicorn(url, data.scratch / "metrics", workers=2, **env)]
        keys = [key]
        if args.compare_with:
            code_dir = args.compare_with.resolve()
            other = stack.enter_context(scratch_postgres(data.scratch / "compared", code_dir))
            keys.append(same_data(other.url(), code_dir, data))
            servers.append(Gunicorn(other.url(), data.scratch / "metrics-compared", workers=2,
                                    code_dir=code_dir, **env))  # fmt: skip
        clients = [
            httpx.Client(base_url=s.url, timeout=120, headers={"Authorization": f"Bearer {k}"})
            for s, k in zip(servers, keys, strict=True)
        ]
        try:
            kpi_ms, kpi = timed_gets(
                clients, "/api/v1/kpis/", {**window, "service": busiest}, args.runs
            )
            series_ms, _ = timed_gets(
                clients, "/api/v1/kpis/timeseries/", {**window, "interval": "hour"}, args.runs
            )
            top_ms, top = timed_gets(
                clients, "/api/v1/top-endpoints/", {**window, "by": "p95", "limit": 5}, args.runs
            )
            _, overall = timed_gets(clients[:1], "/api/v1/kpis/", window, 1)
        finally:
            for client in clients:
                client.close()
            for server in servers:
                server.stop()

        params = {"project": project_id, "start": window["from"], "end": window["to"]}
        raw_ms = []
        with psycopg.connect(url) as conn:
            for _ in range(max(5, args.runs // 4)):
                began = time.perf_counter()
                exact = raw_kpis(conn, {**params, "service": busiest}, "AND service = %(service)s")
                raw_ms.append((time.perf_counter() - began) * 1000)
            errors = relative_errors(kpi["latency_ms"], exact[4])
            errors += relative_errors(overall["latency_ms"], raw_kpis(conn, params)[4])
            for row in top["results"]:
                exact_endpoint = raw_kpis(
                    conn,
                    {
                        **params,
                        "service": row["service"],
                        "endpoint": row["endpoint"],
                        "method": row["method"],
                    },
                    "AND service = %(service)s AND endpoint = %(endpoint)s AND method = %(method)s",
                )
                errors += relative_errors(row["latency_ms"], exact_endpoint[4])
            if kpi["hits"] != exact[0]:
                raise RuntimeError(f"hits differ: API {kpi['hits']}, raw {exact[0]}")

    result = {
        "raw_rows": data.rows,
        **latencies("", kpi_ms[0], series_ms[0], top_ms[0]),
        "raw_kpi_p95_ms": round(percentile(raw_ms, 95), 1),
        "speedup_vs_raw": round(percentile(raw_ms, 95) / percentile(kpi_ms[0], 95), 1),
        "refresh_hour_s": round(data.refresh_hour_s, 3),
        "rollup_storage_ratio": round(data.rollup_bytes / data.raw_bytes, 4),
        "percentile_max_rel_error": round(max(errors), 5),
        "load_s": round(data.load_s, 1),
        "initial_refresh_s": round(data.initial_refresh_s, 1),
        "raw_bytes": data.raw_bytes,
        "rollup_bytes": data.rollup_bytes,
    }
    if args.compare_with:
        compared = latencies("compared_", kpi_ms[1], series_ms[1], top_ms[1])
        result |= {"compared_with": describe(args.compare_with), **compared}
        for name in latencies("", kpi_ms[0], series_ms[0], top_ms[0]):
            result[f"ratio_{name}"] = round(result[name] / compared[f"compared_{name}"], 3)
    write_report(result, Path(args.output))


if __name__ == "__main__":
    main()
