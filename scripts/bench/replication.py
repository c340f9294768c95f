"""`make bench-replication`: what synchronous replication costs a commit and an ingest
request, on the local cluster (`make cluster-local`: a PostgreSQL 15 primary and two
streaming standbys as real processes on this machine, over TLS, and the APP node).

The primary runs in the shipped synchronous mode, DB_SYNCHRONOUS_STANDBY_NAMES =
'FIRST 1 (replica1, replica2)' (restarted with it when it runs without, and restarted as
it was at the end), with replica1 as its synchronous standby. Each mode is a value of
synchronous_commit: `on`, a commit waits until replica1 has flushed it (synchronous), or
`local`, it waits for the primary's own flush only, which is exactly the commit path of
asynchronous replication (PostgreSQL returns before its standby wait either way). Both
modes thus run on the same processes and connections, finely interleaved so that the
machine's other load (2 cores shared with other work) falls on both alike:
  - commit: one-row INSERTs committed by apm_writer over TLS on the primary, one session,
    the mode switched by SET before every commit (sync, async, async, sync, ...);
  - ingest: POST /api/v1/ingest/ of one event through Nginx TLS with the drills' key (the
    app answers after its commit), in blocks of --block requests, the mode switched for
    every session (ALTER SYSTEM and a reload) between blocks, in the same ABBA order.
Reported: median, p95 and mean per mode, the sync/async ratio of the medians, overall
and for each sixth of the run (its spread). Writes reports/bench/replication.json and
prints it as the last line.
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


def abba(count: int) -> list[str]:
    """sync, async, async, sync, ...: neither mode always goes first."""
    pattern = ("sync", "async", "async", "sync")
    return [pattern[i % 4] for i in range(count)]


def time_commits(conn: psycopg.Connection, count: int) -> dict[str, list[float]]:
    durations = {mode: [] for mode in MODES}
    for mode in abba(count):
        conn.execute(f"SET synchronous_commit = {MODES[mode]}")  # one of MODES
        started = time.perf_counter()
        conn.execute(f"INSERT INTO {BENCH_TABLE} (at) VALUES (clock_timestamp())")  # noqa: S608
        durations[mode].append(time.perf_counter() - started)
    return durations


def post_event(client: httpx.Client) -> float:
    event = marker_event(uuid.uuid4(), "bench-replication")
    started = time.perf_counter()
    response = client.post("/api/v1/ingest/", json=[event])
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def time_ingest(cluster: Cluster, client: httpx.Client, blocks: int, size: int):
    durations = {mode: [] for mode in MODES}
    for mode in abba(blocks):
        cluster.set_synchronous_commit(MODES[mode])
        # A backend takes the reload before its next statement; the app's sessions are idle.
        time.sleep(0.2)
        durations[mode].append([post_event(client) for _ in range(size)])
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


def by_sixths(samples: dict[str, list]) -> list[float]:
    """The sync/async ratio of the medians in each sixth of the run."""
    count = min(len(samples["sync"]), len(samples["async"]))
    step = max(count // 6, 1)
    return [
        ratio(flatten(samples["sync"][i : i + step]), flatten(samples["async"][i : i + step]))
        for i in range(0, count - step + 1, step)
    ]


def flatten(values: list) -> list[float]:
    return [v for value in values for v in (value if isinstance(value, list) else [value])]


def compare(samples: dict[str, list]) -> dict:
    sync, asynchronous = flatten(samples["sync"]), flatten(samples["async"])
    return {
        "sync": summary(sync),
        "async": summary(asynchronous),
        "sync_over_async_median": ratio(sync, asynchronous),
        "added_ms_median": round(
            (statistics.median(sync) - statistics.median(asynchronous)) * 1000, 3
        ),
        "sync_over_async_by_sixth": by_sixths(samples),
    }


def run(cluster: Cluster, commits: int, blocks: int, block: int) -> dict:
    with cluster.writer() as conn, cluster.api() as client:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {BENCH_TABLE} (at timestamptz)")
        # Warm-up: connections, the app's caches, after the primary's restart.
        wait_for(lambda: client.get("/readyz").status_code == 200, "the app's /readyz")
        wait_for(lambda: post_event(client), "an ingest request to succeed")
        time_commits(conn, 100)
        for _ in range(30):
            post_event(client)
        commit_samples = time_commits(conn, commits)
        ingest_samples = time_ingest(cluster, client, blocks, block)
        conn.execute(f"DROP TABLE {BENCH_TABLE}")
    return {"commit": compare(commit_samples), "ingest": compare(ingest_samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=4000, help="commits, both modes")
    parser.add_argument("--blocks", type=int, default=120, help="ingest blocks, both modes")
    parser.add_argument("--block", type=int, default=10, help="ingest requests per block")
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
        results = run(cluster, args.commits, args.blocks, args.block)
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
        "commit path of asynchronous replication) on the same processes, interleaved ABBA: "
        "per commit (SET) for `commit`, per block of ingest requests (ALTER SYSTEM + reload) "
        "for `ingest`; one request at a time",
        "parameters": {
            "commits": args.commits,
            "ingest_blocks": args.blocks,
            "ingest_requests_per_block": args.block,
        },
        **results,
    }
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
