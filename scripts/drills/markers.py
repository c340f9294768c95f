"""Marker events for the failure drills: a steady ingest load whose acknowledgements are
recorded, and the check of which acknowledged markers the database still has.

    markers.py ingest --out FILE --stop-file FILE --service NAME (--api URL --api-key-file F
                      [--ca FILE] | --dsn DSN) [--rate 10] [--max-seconds 900]
    markers.py verify --acked FILE --service NAME --dsn DSN [--table api_request]
                      [--acked-before EPOCH] [--after EPOCH] [--incident-at EPOCH]

`ingest` sends one marker at a time, through the app's API (POST /api/v1/ingest/, acknowledged
by a 2xx, which the app answers only after its commit) or, when the APP node is not running,
straight into a `drill_marker` table (acknowledged by the commit). Each acknowledged marker
is a JSON line {"event_id", "acked_at"} in --out, each failed one {"event_id", "failed_at"}
in --out.failures; failures are retried with new markers. It stops when --stop-file exists
(or after --max-seconds) and writes a summary next to --out. A DSN with several hosts and
target_session_attrs=read-write follows a failover as the app's database URL does.

`verify` prints, as JSON, how many acknowledged markers are in the database, which are missing
and when the missing ones were acknowledged (RPO).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

MARKER_TABLE = "drill_marker"


def marker_event(event_id: uuid.UUID, service: str) -> dict:
    return {
        "time": datetime.now(UTC).isoformat(),
        "service": service,
        "endpoint": "/drill/marker",
        "method": "POST",
        "status_code": 200,
        "latency_ms": 1.0,
        "event_id": str(event_id),
    }


class ApiWriter:
    def __init__(self, url: str, api_key: str, ca: str | None):
        self.client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {api_key}"},
            verify=ca or True,
            timeout=5,
        )

    def write(self, event_id: uuid.UUID, service: str) -> None:
        response = self.client.post("/api/v1/ingest/", json=[marker_event(event_id, service)])
        if response.status_code // 100 != 2:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")


class SqlWriter:
    """The APP node's stand-in when it is not running: one committed row per marker."""

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.conn: psycopg.Connection | None = None

    def write(self, event_id: uuid.UUID, service: str) -> None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
                self.conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} (event_id uuid PRIMARY KEY,"
                        " service text NOT NULL, time timestamptz NOT NULL DEFAULT now())"
                    ).format(sql.Identifier(MARKER_TABLE))
                )
            self.conn.execute(
                sql.SQL("INSERT INTO {} (event_id, service) VALUES (%s, %s)").format(
                    sql.Identifier(MARKER_TABLE)
                ),
                [event_id, service],
            )
        except psycopg.Error:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            raise


def ingest(args: argparse.Namespace) -> int:
    if args.api:
        writer = ApiWriter(args.api, Path(args.api_key_file).read_text().strip(), args.ca)
    else:
        writer = SqlWriter(args.dsn)
    out = Path(args.out)
    stop_file = Path(args.stop_file)
    started = time.time()
    interval = 1.0 / args.rate
    acked = failed = 0
    first_failure = last_failure = None
    last_error = ""
    with out.open("a") as acknowledgements, Path(f"{out}.failures").open("a") as failures:
        while not stop_file.exists() and time.time() - started < args.max_seconds:
            tick = time.monotonic()
            event_id = uuid.uuid4()
            try:
                writer.write(event_id, args.service)
            # Every failure (HTTP, connection, database) is counted and retried.
            except Exception as exc:
                failed += 1
                now = time.time()
                first_failure = first_failure or now
                last_failure = now
                last_error = f"{type(exc).__name__}: {exc}"[:300]
                failures.write(json.dumps({"event_id": str(event_id), "failed_at": now}) + "\n")
                failures.flush()
            else:
                acked += 1
                record = {"event_id": str(event_id), "acked_at": time.time()}
                acknowledgements.write(json.dumps(record) + "\n")
                acknowledgements.flush()
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    summary = {
        "writer": "api" if args.api else "sql",
        "started_at": started,
        "stopped_at": time.time(),
        "acked": acked,
        "failed": failed,
        "first_failure_at": first_failure,
        "last_failure_at": last_failure,
        "last_error": last_error,
    }
    Path(f"{out}.summary.json").write_text(json.dumps(summary) + "\n")
    return 0


def verify(args: argparse.Namespace) -> int:
    records = [json.loads(line) for line in Path(args.acked).read_text().splitlines() if line]
    if args.after is not None:
        records = [r for r in records if r["acked_at"] >= args.after]
    ids = [uuid.UUID(r["event_id"]) for r in records]
    query = sql.SQL("SELECT event_id FROM {} WHERE service = %s AND event_id = ANY(%s)").format(
        sql.Identifier(args.table)
    )
    with psycopg.connect(args.dsn, connect_timeout=5) as conn:
        found = {row[0] for row in conn.execute(query, [args.service, ids])}
    missing = [r for r in records if uuid.UUID(r["event_id"]) not in found]
    cutoff = args.acked_before
    must_have = [r for r in missing if cutoff is not None and r["acked_at"] < cutoff]
    acked_times = [r["acked_at"] for r in records]
    result: dict = {
        "acked": len(records),
        "found": len(records) - len(missing),
        "lost": len(missing),
        "lost_acked_before_cutoff": len(must_have),
        "first_lost_acked_at": min((r["acked_at"] for r in missing), default=None),
        "last_lost_acked_at": max((r["acked_at"] for r in missing), default=None),
        "last_acked_at": max(acked_times, default=None),
    }
    if args.incident_at is not None:
        # RPO: how much acknowledged history before the incident is gone, in seconds from
        # the last marker that survived to the incident (0 when none was lost).
        survived = [
            r["acked_at"] for r in records
            if r["acked_at"] < args.incident_at and uuid.UUID(r["event_id"]) in found
        ]  # fmt: skip
        lost_before_incident = [r for r in missing if r["acked_at"] < args.incident_at]
        result["lost_before_incident"] = len(lost_before_incident)
        result["rpo_seconds"] = (
            round(args.incident_at - max(survived), 2) if lost_before_incident and survived else 0
        )
    json.dump(result, sys.stdout)
    print()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ingest_parser = commands.add_parser("ingest")
    ingest_parser.add_argument("--out", required=True)
    ingest_parser.add_argument("--stop-file", required=True)
    ingest_parser.add_argument("--service", required=True)
    ingest_parser.add_argument("--api")
    ingest_parser.add_argument("--api-key-file")
    ingest_parser.add_argument("--ca")
    ingest_parser.add_argument("--dsn")
    ingest_parser.add_argument("--rate", type=float, default=10.0)
    ingest_parser.add_argument("--max-seconds", type=float, default=900.0)
    verify_parser = commands.add_parser("verify")
    verify_parser.add_argument("--acked", required=True)
    verify_parser.add_argument("--service", required=True)
    verify_parser.add_argument("--dsn", required=True)
    verify_parser.add_argument("--table", default="api_request")
    verify_parser.add_argument("--acked-before", type=float)
    verify_parser.add_argument("--after", type=float)
    verify_parser.add_argument("--incident-at", type=float)
    args = parser.parse_args(argv)
    if args.command == "ingest":
        if bool(args.api) == bool(args.dsn):
            parser.error("ingest needs either --api (with --api-key-file) or --dsn")
        if args.api and not args.api_key_file:
            parser.error("--api needs --api-key-file")
        return ingest(args)
    return verify(args)


if __name__ == "__main__":
    sys.exit(main())
