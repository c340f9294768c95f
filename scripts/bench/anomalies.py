"""`make bench-anomalies`: database time of one anomaly evaluation minute across 10,000
endpoint baselines.

One run: the KPI benchmark's data (scripts/bench/kpi.py: 10 million requests over 30
days, 200 endpoints, rollups refreshed) plus 9,800 generated endpoints (98 services x
100, uniform traffic) in the same project, so that it has 10,000 (service, endpoint)
pairs with a baseline. The generated endpoints get `--baseline-per-hour` requests in
each of the 4 baseline hours (the same hour of the week 1-4 weeks before the evaluated
minute; rolled up by jobs.refresh) and `--tail-per-minute` requests per minute in the 4
raw minutes an evaluation reads. Then evaluate(project, at) runs `--runs` times; each
run's database time is the time the process waits in psycopg's Cursor.execute
(statement execution and result transfer), its total time adds the Python work
(sketch decoding, p95s, thresholds). Writes reports/bench/anomalies.json and prints it
as the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from scripts.bench.kpi import ENDPOINTS_PER_SERVICE, SERVICES, Traffic, copy, dataset
from scripts.bench.report import REPORTS, write_report

ENDPOINTS = 10_000
PER_SERVICE = 100
TAIL_MINUTES = 4  # K + SMOOTHING_MINUTES - 1 (observability/anomalies/detector.py)


@contextlib.contextmanager
def statement_timer() -> Iterator[list[float]]:
    """Seconds of each statement executed while inside (psycopg waits in execute() until
    the server has answered with all rows; Django's cursors are psycopg cursors too)."""
    seconds: list[float] = []
    original = psycopg.Cursor.execute

    def timed(self, *args, **kwargs):
        began = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - began)

    psycopg.Cursor.execute = timed
    try:
        yield seconds
    finally:
        psycopg.Cursor.execute = original


def measure(project_id: int, at: datetime, runs: int = 5, connection=None) -> dict:
    """Database and total time of evaluate(project, at), over `runs` runs after one
    warm-up (which fills the per-process caches: analytics backend, sketch store)."""
    from django.db import connection as default_connection

    from observability.anomalies import evaluate

    connection = connection or default_connection
    findings = evaluate(project_id, at, connection=connection)
    db_s, total_s, statements = [], [], []
    for _ in range(runs):
        with statement_timer() as seconds:
            began = time.perf_counter()
            findings = evaluate(project_id, at, connection=connection)
            total_s.append(time.perf_counter() - began)
        db_s.append(sum(seconds))
        statements.append([round(s, 3) for s in seconds])
    return {
        "endpoints_evaluated": len({(f.service, f.endpoint) for f in findings}),
        "findings": len(findings),
        "firing": sum(f.firing for f in findings),
        "db_s_median": round(statistics.median(db_s), 3),
        "db_s_max": round(max(db_s), 3),
        "total_s_median": round(statistics.median(total_s), 3),
        "statement_s_last_run": statements[-1],
    }


def generated_endpoints(url: str, project_id: int, at: datetime, count: int,
                        per_hour: int, per_minute: int) -> dict:  # fmt: skip
    """`count` more endpoints with traffic in the baseline hours and the raw tail of `at`;
    their baseline hours rolled up. Returns the sizes loaded."""
    from observability import jobs
    from observability.analytics.rollups import hour_floor
    from observability.anomalies.baseline import weekly_windows

    traffic = Traffic(seed=7, services=count // PER_SERVICE, per_service=PER_SERVICE,
                      prefix="anomaly", zipf=0.0)  # fmt: skip
    windows = weekly_windows(hour_floor(at))
    tail_start = at.replace(second=0, microsecond=0) - timedelta(minutes=TAIL_MINUTES)
    tail_rows = count * per_minute * TAIL_MINUTES
    with psycopg.connect(url) as conn:
        for window in windows:
            copy(conn, traffic.hour(window.start, count * per_hour, project_id))
        copy(conn, traffic.hour(tail_start, tail_rows, project_id, seconds=TAIL_MINUTES * 60))
    for window in windows:
        jobs.refresh("hour", window.start, window.end, now=datetime.now(UTC))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        rollup_rows = conn.execute(
            "SELECT count(*) FROM apm_rollup_endpoint_hourly WHERE project_id = %s "
            "AND bucket = ANY(%s)", [project_id, [w.start for w in windows]],
        ).fetchone()[0]  # fmt: skip
        tail_total = conn.execute(
            "SELECT count(*) FROM api_request WHERE project_id = %s AND time >= %s "
            "AND time < %s", [project_id, tail_start, tail_start + timedelta(minutes=TAIL_MINUTES)],
        ).fetchone()[0]  # fmt: skip
    return {
        "generated_endpoints": count,
        "generated_baseline_rows": count * per_hour * len(windows),
        "generated_tail_rows": tail_rows,
        "baseline_rollup_rows": rollup_rows,
        "tail_raw_rows": tail_total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="the KPI dataset's rows")
    parser.add_argument("--endpoints", type=int, default=ENDPOINTS)
    parser.add_argument("--baseline-per-hour", type=int, default=150)
    parser.add_argument("--tail-per-minute", type=int, default=12)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", default=str(REPORTS / "anomalies.json"))
    args = parser.parse_args()

    with dataset(args.rows) as data:
        # Half-way through the dataset's last hour, whose raw rows are there.
        at = data.new_hour + timedelta(minutes=30)
        existing = SERVICES * ENDPOINTS_PER_SERVICE  # the dataset's (service, endpoint) pairs
        print(f"loading {args.endpoints - existing:,} more endpoints...", file=sys.stderr)
        sizes = generated_endpoints(data.url, data.project_id, at, args.endpoints - existing,
                                    args.baseline_per_hour, args.tail_per_minute)  # fmt: skip
        result = measure(data.project_id, at, args.runs)
    write_report({
        "raw_rows": data.rows + sizes["generated_baseline_rows"] + sizes["generated_tail_rows"],
        "kpi_dataset_rows": data.rows,
        **sizes,
        "runs": args.runs,
        **result,
        "budget_db_s": 10,
    }, Path(args.output))  # fmt: skip


if __name__ == "__main__":
    main()
