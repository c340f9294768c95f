"""`make bench-alerts`: database time of one alert evaluation minute for 1,000 SLOs.

One run: the KPI benchmark's loader (scripts/bench/kpi.py) fills a scratch PostgreSQL
(`--rows` requests over 30 days, 20 services x 10 endpoints; rollups refreshed); 1,000
SLOs are made on its services (half availability, half latency; a quarter on the whole
service, the others on one endpoint, two endpoints or an endpoint pattern; windows 7, 28
and 30 days). Then `run_alerts` (what the per-minute job runs per project: the SLI
statement, the status upsert, the page and ticket state machines) is timed at `--minutes`
minutes spread over the hour after the last refreshed one, so the raw tail read from
api_request grows from 1 to 59 minutes (the worst case: the hourly refresh is
materialised every hour, a minute or two after it ends). Database time is the
wall time of every statement the evaluation sent (execute_wrapper), over loopback.
Writes reports/bench/alerts.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

from scripts.bench.kpi import DAYS, Traffic, dataset, load, percentile
from scripts.bench.report import REPORTS, write_report

SLOS = 1000
BUDGET_S = 10.0


class StatementTimer:
    """Sums the time of the statements sent through Django's connection."""

    def __init__(self):
        self.seconds, self.statements = 0.0, 0
        self.slowest: tuple[float, str, object] = (0.0, "", None)

    def __call__(self, execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            took = time.perf_counter() - began
            self.seconds += took
            self.statements += 1
            if took > self.slowest[0]:
                self.slowest = (took, sql, params)


def make_slos(project_id: int) -> dict[str, int]:
    from django.db import connection

    from observability.alerting.models import Slo

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT service, array_agg(DISTINCT endpoint ORDER BY endpoint) "
            "FROM apm_rollup_endpoint_daily WHERE project_id = %s GROUP BY 1 ORDER BY 1",
            [project_id],
        )
        services = cursor.fetchall()
    made, shapes = [], {"service": 0, "endpoint": 0, "two endpoints": 0, "pattern": 0}
    for n in range(SLOS):
        service, endpoints = services[n % len(services)]
        shape = list(shapes)[n // len(services) % 4]
        shapes[shape] += 1
        scope = {
            "service": {},
            "endpoint": {"endpoints": [endpoints[n % len(endpoints)]]},
            "two endpoints": {"endpoints": endpoints[:2]},
            "pattern": {"endpoint_pattern": endpoints[0].rsplit("/", 2)[0] + "/*"},
        }[shape]
        latency = n % 2 == 1
        made.append(Slo(
            project_id=project_id, name=f"slo-{n:04d}", service=service, **scope,
            objective="latency" if latency else "availability",
            latency_threshold_ms=[100, 300, 1000][n % 3] if latency else None,
            target=[99, 99.5, 99.9][n % 3], window_days=[7, 28, 30][n % 3],
        ))  # fmt: skip
    Slo.objects.bulk_create(made)
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows",
        type=int,
        default=2_000_000,
        help="Requests over the 30 days (make bench-kpi loads 10,000,000).",
    )
    parser.add_argument("--minutes", type=int, default=12, help="Evaluation minutes timed.")
    parser.add_argument("--output", default=str(REPORTS / "alerts.json"))
    parser.add_argument("--explain", action="store_true",
                        help="Print EXPLAIN ANALYZE of the slowest statement (stderr).")
    args = parser.parse_args()  # fmt: skip

    with dataset(args.rows) as data:
        from django.db import connection

        from observability.alerting import slos
        from observability.alerting.models import AlertEvent

        shapes = make_slos(data.project_id)
        hour = data.new_hour + timedelta(hours=1)  # the first hour past the watermark
        # Its traffic, not refreshed: the raw tail the evaluations read grows through it.
        load(data.url, Traffic(seed=7), data.project_id, hour, 1, data.rows // (DAYS * 24))
        minutes = [hour + timedelta(minutes=1 + m * 58 // max(1, args.minutes - 1))
                   for m in range(args.minutes)]  # fmt: skip
        slos.run_alerts(data.project_id, minutes[0] - timedelta(minutes=1))  # warm caches
        db_s, wall_s, statements = [], [], []
        for at in minutes:
            timer = StatementTimer()
            began = time.perf_counter()
            with connection.execute_wrapper(timer):
                evaluated = slos.run_alerts(data.project_id, at)
            wall_s.append(time.perf_counter() - began)
            db_s.append(timer.seconds)
            statements.append(timer.statements)
            if len(evaluated) != SLOS:
                raise RuntimeError(f"{len(evaluated)} SLOs evaluated, not {SLOS}")
        with connection.cursor() as cursor:
            if args.explain:
                _, sql, params = timer.slowest
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                print("\n".join(row[0] for row in cursor.fetchall()), file=sys.stderr)
            cursor.execute(
                "SELECT count(*) FROM api_request WHERE project_id = %s AND time >= %s",
                [data.project_id, hour],
            )
            raw_last_hour = cursor.fetchone()[0]
        result = {
            "rows": data.rows,
            "slos": SLOS,
            "slo_shapes": shapes,
            "evaluation_minutes": len(minutes),
            "db_seconds_per_minute": {
                "p50": round(statistics.median(db_s), 3),
                "p95": round(percentile(db_s, 95) if len(db_s) > 1 else db_s[0], 3),
                "max": round(max(db_s), 3),
            },
            "wall_seconds_per_minute_max": round(max(wall_s), 3),
            "statements_per_minute_max": max(statements),
            "budget_seconds": BUDGET_S,
            "within_budget": max(db_s) <= BUDGET_S,
            "alert_transitions": AlertEvent.objects.filter(project_id=data.project_id).count(),
            "raw_rows_in_the_unmaterialised_hour": raw_last_hour,
            "note": "one project with all 1,000 SLOs (one SLI statement per project and "
                    "minute); minutes spread over an hour of unmaterialised traffic",
        }  # fmt: skip
        write_report(result, Path(args.output))


if __name__ == "__main__":
    main()
