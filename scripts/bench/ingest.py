"""`make bench-ingest`: REST and OTLP ingest throughput against its limits.

One run on this machine (client, app and database share its cores):
  1. a scratch embedded PostgreSQL, migrated, and gunicorn with 2 workers;
  2. pre-built 1,000-event JSON batches streamed over loopback for --seconds;
  3. the same kind of rows COPYed straight into the table with psycopg, from as many
     connections at once as gunicorn has workers (the physical limit);
  4. the same events through Django ORM bulk_create (the naive path);
  5. OTLP protobuf exports of 1,000 SERVER spans through /v1/traces;
  6. the cost of error grouping: batches where 5 % of the events fail with messages
     that differ in ids and numbers (a third with stack traces), against the very same
     batches with those events answered 200 (the same bytes to parse and store, no
     failure to group), alternating so both see the same machine.
Writes reports/bench/ingest.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psutil

from apm_platform.processes import (
    BASE_DIR,
    Gunicorn,
    manage,
    scratch_postgres,
)
from scripts.bench.report import REPORTS, describe, write_report

BATCH = 1000
JSON = "application/json"
PROTOBUF = "application/x-protobuf"
WORKERS = 2  # gunicorn's; the COPY baseline uses as many connections
SERVICES = [f"service-{n}" for n in range(10)]
ENDPOINTS = [f"/api/resource{n}/{{id}}" for n in range(20)]


def make_events(count: int, now: datetime) -> list[dict]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "time": (now - timedelta(milliseconds=n % 60_000)).isoformat(),
            "service": SERVICES[n % len(SERVICES)],
            "endpoint": ENDPOINTS[n % len(ENDPOINTS)],
            "method": "GET" if n % 4 else "POST",
            "status_code": 500 if n % 97 == 0 else 200,
            "latency_ms": 5.0 + (n * 7919) % 400,
            "trace_id": uuid.uuid4().hex,
            "span_id": uuid.uuid4().hex[:16],
            "environment": "production",
            "host": f"host-{n % 8}",
            "attributes": {"region": "eu-west-1"},
        }
        for n in range(count)
    ]


STACK = """Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/django/core/handlers/base.py", line 197, in _get_response
  File "/srv/app/shop/views.py", line {line}, in checkout
  File "/srv/app/shop/{module}.py", line 42, in {function}
LookupError: order {order} not found"""


def failing_events(count: int, now: datetime, as_failures: bool) -> list[dict]:
    """make_events with 5 % of the events failing the way real ones do (and no other
    failure), or, for the comparison, the same events with no failure at all: answered
    200 and without an exception type (a failure too), so that nothing is grouped."""
    events = make_events(count, now)
    for event in events:
        event["status_code"] = 200
    for n, event in enumerate(events[::20]):
        order = uuid.uuid4().hex[: 6 + n % 7]
        event["status_code"] = 500 if as_failures else 200
        event["error_message"] = f"order {order} not found after {n * 37 % 5000} ms"
        if n % 3 == 0:
            function = ("load_order", "reserve_stock")[n % 2]
            if as_failures:
                event["exception_type"] = "LookupError"
            event["exception_message"] = f"order {order} not found"
            event["stacktrace"] = STACK.format(line=10 + n % 5, module=function.split("_")[1],
                                               function=function, order=order)  # fmt: skip
    return events


def stream(
    url: str, headers: dict, bodies: Iterable[bytes], threads: int, seconds: float,
    content_type: str,
) -> tuple[int, float, list[float]]:  # fmt: skip
    """Send bodies from several threads until time is up; returns (items, elapsed, latencies)."""
    latencies: list[float] = []
    next_body = iter(bodies)
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    sent = [0]

    def worker():
        with httpx.Client(headers={**headers, "Content-Type": content_type}, timeout=60) as client:
            while time.perf_counter() < deadline:
                with lock:
                    body = next(next_body, None)
                if body is None:
                    return
                started = time.perf_counter()
                response = client.post(url, content=body)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
                with lock:
                    latencies.append(elapsed)
                    sent[0] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sent[0] * BATCH, time.perf_counter() - started, latencies


class RssSampler(threading.Thread):
    """Peak resident memory of gunicorn's workers, sampled every 100 ms."""

    def __init__(self, server: Gunicorn):
        super().__init__(daemon=True)
        self.server, self.peak_mb, self.running = server, 0.0, True

    def run(self):
        while self.running:
            for pid in self.server.worker_pids():
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                self.peak_mb = max(self.peak_mb, rss)
            time.sleep(0.1)


def rows_for(events: list[dict], project_id: int) -> list[tuple]:
    from observability.ingest.writer import jsonb_value

    return [
        (datetime.fromisoformat(e["time"]), project_id, e["service"], e["endpoint"], e["method"],
         e["status_code"], e["latency_ms"], uuid.UUID(e["event_id"]), e["trace_id"], e["span_id"],
         e["environment"], e["host"], "", None, None, jsonb_value(orjson.dumps(e["attributes"])),
         300.0, None)
        for e in events
    ]  # fmt: skip


def copy_baseline(database_url: str, events: list[dict], connections: int) -> float:
    """The physical limit of ingest here: raw psycopg COPY into api_request, one
    transaction per 1,000 rows, from as many processes (connections) as the server has
    workers, all at once; rows per second over all of them."""
    share = len(events) // connections
    with multiprocessing.Manager() as manager, multiprocessing.Pool(connections) as pool:
        start_together = manager.Barrier(connections)
        spans = pool.starmap(
            _copy_share,
            [(database_url, events[n * share : (n + 1) * share], start_together)
             for n in range(connections)],
        )  # fmt: skip
    began, ended = min(s for s, _ in spans), max(e for _, e in spans)
    return share * connections / (ended - began)


def _copy_share(database_url: str, events: list[dict], start_together) -> tuple[float, float]:
    import psycopg

    from observability.ingest.writer import COPY_INTO_TABLE, COPY_TYPES

    rows = rows_for(events, project_id=1)
    with psycopg.connect(database_url) as conn:
        start_together.wait()
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_INTO_TABLE) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows[start : start + BATCH]:
                    copy.write_row(row)
        return started, time.perf_counter()


def orm_baseline(events: list[dict]) -> float:
    """Django ORM bulk_create of the same events, 1,000 per call."""
    from observability.models import ApiRequest

    objects = [
        ApiRequest(project_id=1, time=datetime.fromisoformat(e["time"]), service=e["service"],
                   endpoint=e["endpoint"], method=e["method"], status_code=e["status_code"],
                   latency_ms=e["latency_ms"], event_id=uuid.UUID(e["event_id"]),
                   trace_id=e["trace_id"], span_id=e["span_id"], environment=e["environment"],
                   host=e["host"], attributes=e["attributes"])
        for e in events
    ]  # fmt: skip
    started = time.perf_counter()
    for start in range(0, len(objects), BATCH):
        ApiRequest.objects.bulk_create(objects[start : start + BATCH])
    return len(objects) / (time.perf_counter() - started)


def serializer_baseline(events: list[dict]) -> float:
    """What a naive ingest view does: DRF serializer validation (the event schema's
    rules), then bulk_create."""
    from observability.api.requests import EventSerializer
    from observability.models import ApiRequest

    started = time.perf_counter()
    for start in range(0, len(events), BATCH):
        serializer = EventSerializer(data=events[start : start + BATCH], many=True)
        serializer.is_valid(raise_exception=True)
        ApiRequest.objects.bulk_create(
            ApiRequest(project_id=1, **{**item, "time": datetime.fromisoformat(item["time"])})
            for item in serializer.validated_data
        )
    return len(events) / (time.perf_counter() - started)


def otlp_bodies(count: int) -> list[bytes]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    def attr(key, **value):
        return KeyValue(key=key, value=AnyValue(**value))

    now_ns = time.time_ns()
    bodies = []
    for _ in range(count):
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(attr("service.name", string_value="otel-svc"))
        spans = resource_spans.scope_spans.add().spans
        for n in range(BATCH):
            start = now_ns - n * 1_000_000
            spans.add(
                trace_id=os.urandom(16), span_id=os.urandom(8), name="GET /items/{id}",
                kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start,
                end_time_unix_nano=start + 12_000_000,
                attributes=[attr("http.request.method", string_value="GET"),
                            attr("http.route", string_value=ENDPOINTS[n % len(ENDPOINTS)]),
                            attr("http.response.status_code", int_value=200)],
            )  # fmt: skip
        bodies.append(request.SerializeToString())
    return bodies


def error_grouping_cost(url: str, headers: dict, args) -> dict:
    """Events per second with 5 % failures grouped, and with the same events not failing,
    in alternating rounds."""
    rounds = args.grouping_rounds
    seconds = args.grouping_seconds / (2 * rounds)
    capacity = int(seconds * 100_000 / BATCH) + 1
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for as_failures in (True, False):
            now = datetime.now(UTC)
            bodies = [orjson.dumps(failing_events(BATCH, now, as_failures))
                      for _ in range(capacity)]  # fmt: skip
            events, elapsed, _ = stream(
                f"{url}/api/v1/ingest/", headers, bodies, args.client_threads, seconds, JSON
            )
            rates[as_failures].append(events / elapsed)
    grouped, plain = statistics.median(rates[True]), statistics.median(rates[False])
    print(f"error grouping: {grouped:.0f} vs {plain:.0f} events/s", file=sys.stderr)
    return {
        "events_per_s_5pct_failures_grouped": round(grouped),
        "events_per_s_same_events_not_failing": round(plain),
        "error_grouping_slowdown": round(1 - grouped / plain, 3),
        "error_grouping_rounds": rounds,
    }


def compare_versions(scratch: Path, code_dir: Path, args) -> dict:
    """REST and OTLP throughput of this code and of another checkout's, each on a new
    database its own code migrated, streaming the same bodies in alternating rounds (more,
    shorter rounds cancel more of a noisy machine's bursts)."""
    rounds = args.compare_rounds
    servers, headers = [], []
    with contextlib.ExitStack() as stack:
        for name, code in (("this", BASE_DIR), ("compared", code_dir)):
            database = stack.enter_context(scratch_postgres(scratch / f"ab-{name}", code))
            key = manage(database.url(), "create_api_key", "--project", "bench", code_dir=code)
            headers.append({"Authorization": f"Bearer {key.strip()}"})
            server = Gunicorn(database.url(), scratch / f"ab-metrics-{name}", workers=WORKERS,
                              code_dir=code, DATABASE_CONN_MAX_AGE="60")  # fmt: skip
            stack.callback(server.stop)
            servers.append(server)
        result = {"compared_with": describe(code_dir)}
        now = datetime.now(UTC)
        seconds = args.compare_seconds / rounds
        # Enough for 80,000 events and 50,000 spans a second; each server gets the same
        # bodies (their databases are separate), each body once.
        rest = [orjson.dumps(make_events(BATCH, now))
                for _ in range(int(args.compare_seconds * 80) + 1)]  # fmt: skip
        otlp = otlp_bodies(int(args.compare_seconds * 50) + 1)
        for label, path, bodies, kind in (("events", "/api/v1/ingest/", rest, JSON),
                                          ("spans", "/v1/traces", otlp, PROTOBUF)):  # fmt: skip
            sent, took = [0, 0], [0.0, 0.0]
            unsent = [iter(bodies), iter(bodies)]
            for round_ in range(rounds):
                order = (0, 1) if round_ % 2 == 0 else (1, 0)
                for n in order:
                    items, elapsed, _ = stream(f"{servers[n].url}{path}", headers[n], unsent[n],
                                               args.client_threads, seconds, kind)  # fmt: skip
                    sent[n] += items
                    took[n] += elapsed
            this, other = sent[0] / took[0], sent[1] / took[1]
            result |= {f"ab_{label}_per_s": round(this),
                       f"ab_compared_{label}_per_s": round(other),
                       f"ab_ratio_{label}_per_s": round(this / other, 3)}  # fmt: skip
            print(f"A/B {label}: {this:.0f} vs {other:.0f} per s", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--otlp-seconds", type=float, default=15)
    parser.add_argument("--grouping-seconds", type=float, default=40)
    parser.add_argument("--grouping-rounds", type=int, default=4)
    parser.add_argument(
        "--compare-with", type=Path, default=None, metavar="CHECKOUT",
        help="Another checkout of the project (e.g. a git worktree of the code before a "
        "change): REST and OTLP throughput of both, in alternating rounds, and the ratios.",
    )  # fmt: skip
    parser.add_argument("--compare-seconds", type=float, default=30)
    parser.add_argument("--compare-rounds", type=int, default=6)
    parser.add_argument("--client-threads", type=int, default=4)
    parser.add_argument("--output", default=str(REPORTS / "ingest.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch, \
            scratch_postgres(Path(scratch)) as database:  # fmt: skip
        key = manage(database.url(), "create_api_key", "--project", "bench").strip()
        headers = {"Authorization": f"Bearer {key}"}
        # Sized for well above the targets, so the run is time-bound, not data-bound.
        capacity = int(args.seconds * 100_000 / BATCH) + 1
        print(f"building {capacity} batches of {BATCH} events...", file=sys.stderr)
        now = datetime.now(UTC)
        bodies = [orjson.dumps(make_events(BATCH, now)) for _ in range(capacity)]

        server = Gunicorn(database.url(), Path(scratch) / "metrics", workers=WORKERS,
                          DATABASE_CONN_MAX_AGE="60")  # fmt: skip
        sampler = RssSampler(server)
        sampler.start()
        try:
            events, elapsed, latencies = stream(
                f"{server.url}/api/v1/ingest/",
                headers,
                bodies,
                args.client_threads,
                args.seconds,
                "application/json",
            )
            print(f"REST: {events} events in {elapsed:.1f}s", file=sys.stderr)
            spans_body = otlp_bodies(int(args.otlp_seconds * 40_000 / BATCH) + 1)
            spans, otlp_elapsed, _ = stream(
                f"{server.url}/v1/traces",
                headers,
                spans_body,
                args.client_threads,
                args.otlp_seconds,
                "application/x-protobuf",
            )
            grouping = error_grouping_cost(server.url, headers, args)
        finally:
            sampler.running = False
            server.stop()

        # Before Django is set up here (for the ORM baseline): its logging configuration
        # would log every request of the benchmark's own HTTP client.
        compared = (
            compare_versions(Path(scratch), args.compare_with.resolve(), args)
            if args.compare_with
            else {}
        )
        baseline_events = make_events(200_000, datetime.now(UTC))
        copy_rate = copy_baseline(database.url(), baseline_events, connections=WORKERS)
        os.environ["DATABASE_URL"] = database.url()  # the ORM baseline's Django uses it
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apm_platform.ci_settings")
        import django

        django.setup()
        orm_rate = orm_baseline(make_events(50_000, datetime.now(UTC)))
        serializer_rate = serializer_baseline(make_events(20_000, datetime.now(UTC)))

    events_per_s = events / elapsed
    result = {
        "events_per_s": round(events_per_s),
        "copy_rows_per_s": round(copy_rate),
        "orm_rows_per_s": round(orm_rate),
        "ratio_vs_copy": round(events_per_s / copy_rate, 3),
        "ratio_vs_orm": round(events_per_s / orm_rate, 2),
        "batch_p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 1),
        "worker_peak_rss_mb": round(sampler.peak_mb, 1),
        "otlp_spans_per_s": round(spans / otlp_elapsed),
        # Context, not a target: a naive view also validates with DRF serializers.
        "orm_serializer_rows_per_s": round(serializer_rate),
        "batches": len(latencies),
        "batches_prepared": len(bodies),
        "seconds": round(elapsed, 1),
        "client_threads": args.client_threads,
        "server_workers": WORKERS,
        "copy_connections": WORKERS,
        **grouping,
        **compared,
    }
    write_report(result, Path(args.output))


if __name__ == "__main__":
    main()
