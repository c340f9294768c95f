"""`make bench-replication`: what synchronous replication costs a commit and an ingest
request, on the local cluster (`make cluster-local`: a PostgreSQL 15 primary and two
streaming standbys as real processes on this machine, over TLS, and the APP node).

1. The primary runs in the shipped synchronous mode, DB_SYNCHRONOUS_STANDBY_NAMES =
   'FIRST 1 (replica1, replica2)' (restarted with it when it runs without, and restarted
   as it was at the end), until replica1 is its synchronous standby.
2. Before each block, synchronous_commit is switched for every session (ALTER SYSTEM and
   a reload): `on`, a commit waits until replica1 has flushed it (synchronous), or
   `local`, it waits for the primary's own flush only, which is exactly the commit path
   of asynchronous replication (PostgreSQL returns before its standby wait either way).
   So both modes run on the same processes, connections and machine, in alternating
   rounds (sync then async, then async then sync, ...), and are compared as ratios.
3. Each block measures, one at a time: `commit`, a one-row INSERT committed by apm_writer
   over TLS on the primary; `ingest`, POST /api/v1/ingest/ of one event through Nginx TLS
   with the drills' key (the app answers after its commit).
Writes reports/bench/replication.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from apm_platform.processes import BASE_DIR
from scripts.bench.report import REPORTS, write_report
from scripts.drills.markers import marker_event

LOCAL_SH = BASE_DIR / "scripts/cluster/local.sh"
SYNC_NAMES = "FIRST 1 (replica1, replica2)"
MODES = {"sync": "on", "async": "local"}
BENCH_TABLE = "bench_replication_commit"


class Cluster:
    """The running local cluster, through scripts/cluster/local.sh and its layout."""

    def __init__(self):
        layout = subprocess.run(
            [
                "/bin/bash",
                "-c",
                'source scripts/cluster/local-env.sh; echo "$STATE $(current_primary)"'
                ' "$(db_port "$(current_primary)")" "$PORT_APP_HTTPS"',
            ],
            cwd=BASE_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        self.state = Path(layout[0])
        self.primary, self.primary_port, self.https_port = layout[1], int(layout[2]), layout[3]
        self.certificate = self.state / "certs/public.crt"
        if not (self.state / "run" / f"db-{self.primary}.pid").exists():
            sys.exit("bench-replication: the local cluster is not running: make cluster-local")

    def local_sh(self, *args: str, **env: str) -> str:
        return subprocess.run(  # noqa: S603 - the checkout's local.sh
            [str(LOCAL_SH), *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def sql(self, statement: str) -> str:
        """As the superuser, on the primary's socket (peer authentication)."""
        return self.local_sh("psql", self.primary, "-c", statement)

    def restart_primary(self, standby_names: str) -> None:
        self.local_sh("stop", f"db-{self.primary}")
        self.local_sh("start", f"db-{self.primary}", DB_SYNCHRONOUS_STANDBY_NAMES=standby_names)
        wait_for(lambda: self.sql("SHOW synchronous_standby_names") == standby_names, "restart")

    def sync_standby(self) -> str:
        return self.sql(
            "SELECT coalesce(string_agg(application_name, ','), '') FROM pg_stat_replication"
            " WHERE sync_state = 'sync'"
        )

    def set_synchronous_commit(self, value: str) -> None:
        self.sql(f"ALTER SYSTEM SET synchronous_commit = '{value}'")  # one of MODES
        self.sql("SELECT pg_reload_conf()")

    def writer(self) -> psycopg.Connection:
        password = (self.state / "secrets/db_writer_password").read_text().strip()
        return psycopg.connect(
            host="127.0.0.1",
            port=self.primary_port,
            dbname="apm",
            user="apm_writer",
            password=password,
            sslmode="verify-full",
            sslrootcert=str(self.certificate),
            autocommit=True,
        )

    def api(self) -> httpx.Client:
        key = (self.state / "app/drill-api-key").read_text().strip()
        return httpx.Client(
            base_url=f"https://localhost:{self.https_port}",
            headers={"Authorization": f"Bearer {key}"},
            verify=str(self.certificate),
            timeout=10,
        )


def wait_for(predicate, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (subprocess.CalledProcessError, psycopg.Error, httpx.HTTPError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"bench-replication: timed out waiting for {what}")
        time.sleep(0.5)


def time_commits(conn: psycopg.Connection, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        conn.execute(f"INSERT INTO {BENCH_TABLE} (at) VALUES (clock_timestamp())")  # noqa: S608
        durations.append(time.perf_counter() - started)
    return durations


def time_ingest(client: httpx.Client, count: int) -> list[float]:
    durations = []
    for _ in range(count):
        event = marker_event(uuid.uuid4(), "bench-replication")
        started = time.perf_counter()
        response = client.post("/api/v1/ingest/", json=[event])
        durations.append(time.perf_counter() - started)
        response.raise_for_status()
    return durations


def summary(durations: list[float]) -> dict:
    milliseconds = [d * 1000 for d in durations]
    return {
        "count": len(milliseconds),
        "median_ms": round(statistics.median(milliseconds), 3),
        "p95_ms": round(statistics.quantiles(milliseconds, n=100)[94], 3),
        "mean_ms": round(statistics.fmean(milliseconds), 3),
    }


def ratio(sync: list[float], asynchronous: list[float]) -> float:
    return round(statistics.median(sync) / statistics.median(asynchronous), 2)


def run(cluster: Cluster, rounds: int, commits: int, requests: int) -> dict:
    samples = {kind: {mode: [] for mode in MODES} for kind in ("commit", "ingest")}
    per_round = []
    with cluster.writer() as conn, cluster.api() as client:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {BENCH_TABLE} (at timestamptz)")
        # Warm-up: connections, the app's caches, after the primary's restart.
        wait_for(lambda: client.get("/readyz").status_code == 200, "the app's /readyz")
        time_commits(conn, 50)
        wait_for(lambda: time_ingest(client, 1), "an ingest request to succeed")
        time_ingest(client, 30)
        for number in range(rounds):
            order = ("sync", "async") if number % 2 == 0 else ("async", "sync")
            this_round = {}
            for mode in order:
                cluster.set_synchronous_commit(MODES[mode])
                wait_for(
                    lambda m=mode: (
                        conn.execute("SHOW synchronous_commit").fetchone()[0] == MODES[m]
                    ),
                    f"synchronous_commit {MODES[mode]}",
                )
                time.sleep(1)  # the app's idle connections take the reload too
                this_round[mode] = {
                    "commit": time_commits(conn, commits),
                    "ingest": time_ingest(client, requests),
                }
                for kind in samples:
                    samples[kind][mode] += this_round[mode][kind]
            per_round.append(
                {
                    "order": list(order),
                    **{
                        f"{kind}_sync_over_async": ratio(
                            this_round["sync"][kind], this_round["async"][kind]
                        )
                        for kind in samples
                    },
                }
            )
            print(f"round {number + 1}/{rounds}: {per_round[-1]}", file=sys.stderr)
        conn.execute(f"DROP TABLE {BENCH_TABLE}")
    return {
        kind: {
            **{mode: summary(samples[kind][mode]) for mode in MODES},
            "sync_over_async_median": ratio(samples[kind]["sync"], samples[kind]["async"]),
            "added_ms_median": round(
                (
                    statistics.median(samples[kind]["sync"])
                    - statistics.median(samples[kind]["async"])
                )
                * 1000,
                3,
            ),
            "rounds_sync_over_async": [r[f"{kind}_sync_over_async"] for r in per_round],
        }
        for kind in samples
    } | {"rounds": per_round}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--commits", type=int, default=300, help="commits per block")
    parser.add_argument("--requests", type=int, default=150, help="ingest requests per block")
    parser.add_argument("--output", type=Path, default=REPORTS / "replication.json")
    args = parser.parse_args(argv)

    cluster = Cluster()
    configured = cluster.sql("SHOW synchronous_standby_names")
    restarted = configured != SYNC_NAMES
    if restarted:
        print(f"restarting db-{cluster.primary} with {SYNC_NAMES!r}", file=sys.stderr)
        cluster.restart_primary(SYNC_NAMES)
    try:
        wait_for(lambda: cluster.sync_standby() != "", "a synchronous standby")
        results = run(cluster, args.rounds, args.commits, args.requests)
        standby = cluster.sync_standby()
    finally:
        cluster.sql("ALTER SYSTEM RESET synchronous_commit")
        cluster.sql("SELECT pg_reload_conf()")
        if restarted:
            cluster.restart_primary(configured)
    report = {
        "benchmark": "replication",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench-replication",
        "cluster": "local (make cluster-local): PostgreSQL 15, primary and 2 streaming "
        "standbys over TLS on one 2-core machine shared with other work; app behind Nginx TLS",
        "synchronous_standby_names": SYNC_NAMES,
        "synchronous_standby": standby,
        "how": "synchronous_commit on (sync: waits for the standby's flush) vs local (the "
        "commit path of asynchronous replication), switched by ALTER SYSTEM + reload "
        "between blocks, alternating rounds on the same processes; one request at a time",
        "parameters": {
            "rounds": args.rounds,
            "commits_per_block": args.commits,
            "ingest_requests_per_block": args.requests,
        },
        **results,
    }
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
