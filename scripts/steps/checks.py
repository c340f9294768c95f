"""The six steps' checks. Each function below is one step: it adds named checks to its
Step (scripts/steps/runner.py), which times them and writes the reports."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from scripts.steps.runner import Failed, Step, expect
from scripts.steps.target import ROOT, CommandFailed, Keys, Skipped, Target, local_keys, run

TITLES = {
    1: "functional: health, auth, ingest, CRUD, filters, error groups",
    2: "cluster connectivity: TLS everywhere, replicas streaming, exporters up",
    3: "roles and routing: writer, reader, replicas, read-after-write",
    4: "backups: pgbackrest check and info, a differential backup, a verified restore",
    5: "seed and analytics: KPIs and rankings equal to raw SQL",
    6: "drills: baseline, primary restore, failover, S3 outage",
}
# Each drill's script and the name of the report it writes.
DRILLS = {
    "00_baseline": "00_baseline",
    "01_primary_restore": "01_primary_restore",
    "02_failover_replica": "02_failover",
    "03_minio_outage": "03_minio_outage",
}


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def http(target: Target) -> httpx.Client:
    return httpx.Client(verify=str(target.ca_file) if target.ca_file else True, timeout=30)


def keys_for(step: Step, project: str) -> Keys:
    if step.target.keys:
        return step.target.keys
    holder: dict[str, Keys] = {}

    def make() -> str:
        holder["keys"] = local_keys(step.target, project)
        return (
            f"ingest+read, admin and read-only keys of project {project} (manage.py create_api_key)"
        )

    if not step.check(f"keys of project {project}", make):
        raise SystemExit(step.finish())
    return holder["keys"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- Step 1 -------------------------------------------------------------------------------


def step1(step: Step) -> None:
    target = step.target
    keys = keys_for(step, "steps")
    service = f"step1-{stamp()}"

    def ready() -> str:
        body = httpx.get(f"{target.monitoring_url}/readyz", timeout=30).json()
        expect(
            body.get("checks", {}).get("database", {}).get("ok") is True,
            "the database check failed",
            body,
        )
        expect(
            body["checks"]["migrations"] == {"ok": True, "pending": 0}, "migrations pending", body
        )
        return f"database {body['checks']['database']['latency_ms']} ms, no migration pending"

    def schema() -> str:
        with http(target) as client:
            response = client.get(
                f"{target.base_url}/api/schema/", headers={"Accept": "application/json"}
            )
        expect(
            response.status_code == 200,
            f"/api/schema/ answered {response.status_code}",
            response.text[:2000],
        )
        paths = response.json()["paths"]
        expect("/api/v1/ingest/" in paths, "no ingest operation in the schema", sorted(paths))
        return f"OpenAPI {response.json()['openapi']}, {len(paths)} paths"

    def stored() -> str:
        project = target.project_of(keys.api_key)
        rows = target.query(
            target.writer_dsn,
            "SELECT endpoint, method, status_code FROM api_request WHERE project_id = %s AND service = %s "
            "ORDER BY time",
            (project, service),
        )
        expected = [
            ("/cart/{id}", "GET", 200),
            ("/cart/{id}", "GET", 200),
            ("/checkout", "POST", 500),
            ("/cart/{id}", "GET", 200),
        ]
        expect(rows == expected, f"{len(rows)} rows stored, expected A, B, C, E", rows)
        return "A, B, C and E stored once each; D (strict batch refused) and F (deleted) absent"

    step.check("readiness on the monitoring path", ready)
    step.check("OpenAPI schema served through the proxy", schema)
    step.newman(1, keys, service=service)
    step.check(
        "the database holds exactly what was acknowledged",
        stored,
        requires="newman: APM_Observability_Step1",
    )


# --- Step 2 -------------------------------------------------------------------------------


def tls_session(dsn: str) -> tuple:
    with psycopg.connect(dsn, connect_timeout=10) as connection:
        return connection.execute(
            "SELECT ssl, version, pg_is_in_recovery(), current_setting('server_version') FROM pg_stat_ssl "
            "WHERE pid = pg_backend_pid()"
        ).fetchone()


def tls_handshake(port: int, ca: Path, cert: Path, key: Path, host: str = "localhost") -> str:
    """A mutual-TLS handshake (pgBackRest's servers): the peer verified by CA, our CERT shown."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])
            return f"{tls.version()}, peer CN={subject.get('commonName')}"


def step2(step: Step) -> None:
    target = step.target
    keys = keys_for(step, "steps")
    nodes = {
        "primary (writer)": target.writer_dsn,
        **{f"{n} (reader)": dsn for n, dsn in target.reader_dsns.items()},
    }
    for name, dsn in nodes.items():

        def session(dsn=dsn, name=name) -> str:
            encrypted, version, in_recovery, server = tls_session(dsn)
            expect(encrypted, f"{name}: the session is not encrypted")
            expect(
                in_recovery == ("reader" in name), f"{name}: pg_is_in_recovery() is {in_recovery}"
            )
            return f"{version}, certificate verified (verify-full), PostgreSQL {server}, in recovery: {in_recovery}"

        step.check(f"TLS to the database: {name}", session)

    def plain_text_refused() -> str:
        dsn = (
            target.node_dsn("reader", target.primary(), sslmode="disable") if target.local else None
        )
        if dsn is None:
            raise Skipped("needs the instances' addresses (TARGET=local)")
        try:
            psycopg.connect(dsn, connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            expect("no pg_hba.conf entry" in str(exc), "refused, but not by pg_hba.conf", str(exc))
            return "refused by pg_hba.conf (hostssl only)"
        raise Failed("a plain-text connection was accepted")

    def streaming() -> str:
        rows = target.query(
            target.monitor_dsn,
            "SELECT application_name, state, ssl, coalesce(extract(epoch FROM replay_lag), 0)::float "
            "FROM pg_stat_replication JOIN pg_stat_ssl USING (pid) ORDER BY 1",
        )
        expect(len(rows) == len(target.reader_dsns), f"{len(rows)} replicas connected", rows)
        expect(
            all(state == "streaming" and encrypted for _, state, encrypted, _ in rows),
            "not all streaming over TLS",
            rows,
        )
        return ", ".join(
            f"{name} streaming over TLS, replay lag {lag:.3f} s" for name, _, _, lag in rows
        )

    step.check("TLS only: a plain-text connection is refused", plain_text_refused)
    step.check("replication: every replica streaming over TLS", streaming)

    exporters = {
        f"postgres-exporter {n}": (f"EXPORTER_{n.upper()}", "pg_up 1")
        for n in ("primary", "replica1", "replica2")
    }
    exporters |= {
        f"node-exporter {n}": (f"NODE_{n.upper()}", "node_exporter_build_info")
        for n in ("data", "control", "app")
    }
    for name, (port, needle) in exporters.items():

        def scrape(port=port, needle=needle, name=name) -> str:
            target.require_local(name)
            response = httpx.get(
                f"https://127.0.0.1:{target.port(port)}/metrics",
                verify=str(target.ca_file),
                timeout=30,
            )
            expect(response.status_code == 200, f"{name} answered {response.status_code}")
            expect(
                needle in response.text,
                f"{name}: no '{needle}' in its metrics",
                response.text[:3000],
            )
            return f"HTTPS (deployment certificate), '{needle}' in {len(response.text)} bytes"

        step.check(f"exporter up over TLS: {name}", scrape)

    def prometheus_targets() -> str:
        target.require_local("Prometheus' API")
        active = httpx.get(
            f"http://127.0.0.1:{target.port('PROMETHEUS')}/api/v1/targets", timeout=30
        ).json()["data"]["activeTargets"]
        down = [
            t["scrapeUrl"] + ": " + t.get("lastError", "") for t in active if t["health"] != "up"
        ]
        expect(active and not down, f"{len(down)} of {len(active)} targets not up", down)
        return f"{len(active)} targets, all up"

    def pgbackrest_tls() -> str:
        target.require_local("pgBackRest's TLS servers")
        certs = Path(target.layout["STATE"]) / "certs" / "pgbackrest"
        repo = tls_handshake(
            target.port("PGBACKREST_REPO"),
            certs / "ca.crt",
            certs / "client.crt",
            certs / "client.key",
        )
        data = tls_handshake(
            target.port("PGBACKREST_DB"),
            certs / "ca.crt",
            certs / "server.crt",
            certs / "server.key",
        )
        return f"repository host: {repo}; DATA node: {data}"

    def s3_tls() -> str:
        target.require_local("the S3 server")
        ca = Path(target.layout["STATE"]) / "certs" / "minio" / "public.crt"
        response = httpx.get(
            f"https://localhost:{target.port('S3_HTTPS')}/", verify=str(ca), timeout=30
        )
        return f"HTTPS verified, anonymous request answered {response.status_code}"

    def app_tls() -> str:
        with http(target) as client:
            response = client.get(f"{target.base_url}/healthz")
        expect(response.status_code == 200, f"/healthz answered {response.status_code}")
        if target.local:
            plain = httpx.get(
                f"http://127.0.0.1:{target.port('APP_HTTP')}/api/v1/requests/", timeout=30
            )
            expect(
                plain.status_code in (301, 308),
                f"plain HTTP answered {plain.status_code}, not a redirect",
            )
            return f"HTTPS {response.http_version} verified; plain HTTP {plain.status_code} to {plain.headers['location']}"
        return f"HTTPS {response.http_version} verified"

    step.check("Prometheus: every scrape target up", prometheus_targets)
    step.check("pgBackRest: repository host and DATA server over mutual TLS", pgbackrest_tls)
    step.check("S3 server over TLS", s3_tls)
    step.check("app over TLS through Nginx", app_tls)
    step.newman(2, keys)


# --- Step 3 -------------------------------------------------------------------------------

PROBE_WRITE = "INSERT INTO api_request SELECT * FROM api_request WHERE false"


def attempt_write(dsn: str) -> str | None:
    """A write that stores nothing (rolled back): None when allowed, else the SQLSTATE."""
    with psycopg.connect(dsn, connect_timeout=10) as connection:
        try:
            connection.execute(PROBE_WRITE)
        except psycopg.Error as exc:
            return f"{exc.sqlstate} {exc.diag.message_primary}"
        finally:
            connection.rollback()
    return None


def replica_reads(target: Target) -> dict[str, float]:
    text = httpx.get(f"{target.monitoring_url}/metrics", timeout=30).text
    counts: dict[str, float] = {}
    for alias, value in re.findall(r'^apm_db_reads_total\{database="([^"]+)"\} (\S+)$', text, re.M):
        counts[alias] = counts.get(alias, 0) + float(value)
    return counts


def step3(step: Step) -> None:
    target = step.target
    keys = keys_for(step, "steps")

    def writer_writes() -> str:
        refusal = attempt_write(target.writer_dsn)
        expect(refusal is None, f"apm_writer cannot write: {refusal}")
        return "INSERT into api_request allowed on the primary (rolled back)"

    def reader_refused() -> str:
        if not target.local:
            raise Skipped("needs apm_reader on the primary (TARGET=local)")
        refusal = attempt_write(target.node_dsn("reader", target.primary()))
        expect(
            refusal is not None and refusal.startswith("42501"),
            f"apm_reader on the primary: {refusal}",
        )
        return f"apm_reader on the primary: {refusal}"

    def replicas_read_only() -> str:
        if not target.local:
            raise Skipped("needs apm_writer on each replica (TARGET=local)")
        refusals = {
            node: attempt_write(target.node_dsn("writer", node)) for node in target.replicas()
        }
        expect(
            all(r and r.startswith("25006") for r in refusals.values()),
            "a replica took a write",
            refusals,
        )
        return "; ".join(f"{node}: {r}" for node, r in refusals.items())

    def reader_reads() -> str:
        seen = []
        for node, dsn in target.reader_dsns.items():
            ((in_recovery, count),) = target.query(
                dsn, "SELECT pg_is_in_recovery(), count(*) FROM api_request"
            )
            expect(in_recovery, f"{node} is not in recovery")
            seen.append(f"{node}: {count} rows")
        expect(seen, "no replica configured")
        return "apm_reader reads api_request on " + ", ".join(seen)

    def app_reads_replicas() -> str:
        # A project that never wrote: no read-after-write pin, so its reads may go to replicas.
        reader = (
            local_keys(target, f"step3-reads-{stamp()}").read_api_key
            if target.local
            else keys.read_api_key
        )
        before = replica_reads(target)
        with http(target) as client:
            for _ in range(10):
                response = client.get(
                    f"{target.base_url}/api/v1/requests/?page_size=1", headers=bearer(reader)
                )
                expect(
                    response.status_code == 200,
                    f"list answered {response.status_code}",
                    response.text,
                )
        after = replica_reads(target)
        replicas = {
            alias: after.get(alias, 0) - before.get(alias, 0)
            for alias in after
            if alias != "default"
        }
        expect(
            sum(replicas.values()) >= 10,
            "the app's reads did not reach the replicas",
            {"before": before, "after": after},
        )
        return "10 list requests: reads by database " + ", ".join(
            f"{a} +{n:g}" for a, n in sorted(replicas.items())
        )

    def check_cluster_dbs() -> str:
        reports = json.loads(target.manage("check_cluster_dbs", "--json"))
        by_alias = {r["alias"]: r for r in reports}
        expect(by_alias["default"]["role"] == "primary", "default is not the primary", reports)
        standbys = [r for alias, r in by_alias.items() if alias != "default"]
        expect(
            len(standbys) == len(target.reader_dsns),
            f"{len(standbys)} replicas configured",
            reports,
        )
        for report in standbys:
            expect(
                report["reachable"] and report["role"] == "standby",
                f"{report['alias']} is not a standby",
                report,
            )
        version = target.query(target.writer_dsn, "SELECT current_setting('server_version')")[0][0]
        expect(
            all(r["server_version"] == version for r in reports),
            "server versions differ from SQL",
            reports,
        )
        return f"default primary, {', '.join(r['alias'] for r in standbys)} standbys, PostgreSQL {version} everywhere"

    step.check("apm_writer writes on the primary", writer_writes)
    step.check("apm_reader cannot write", reader_refused)
    step.check("replicas refuse writes (read-only)", replicas_read_only)
    step.check("apm_reader reads on every replica", reader_reads)
    step.check("the app's reads reach the replicas", app_reads_replicas)
    step.newman(3, keys)
    step.check("check_cluster_dbs agrees with the databases", check_cluster_dbs)


# --- Step 4 -------------------------------------------------------------------------------

CHECKSUM = (
    "SELECT count(*), coalesce(md5(string_agg(concat_ws('|', event_id, time, service, endpoint, method, "
    "status_code, latency_ms, error_message), ',' ORDER BY event_id, time)), '') FROM api_request "
    "WHERE service = %s"
)
TABLE_CHECKSUM = (
    "SELECT count(*), coalesce(md5(string_agg(concat_ws('|', project_id, event_id, time, latency_ms), ',' "
    "ORDER BY project_id, event_id, time)), '') FROM api_request WHERE time < %s"
)


def pgbackrest_info(target: Target) -> dict:
    return json.loads(target.cluster("pgbackrest-repo", "--stanza=apm", "--output=json", "info"))[0]


def step4(step: Step) -> None:
    target = step.target
    keys = keys_for(step, "steps")
    service = f"step4-{stamp()}"
    state: dict = {}

    def check() -> str:
        output = target.cluster("pgbackrest-repo", "--stanza=apm", "check")
        archived = [
            line.split("INFO: ")[-1]
            for line in output.splitlines()
            if "successfully archived" in line
        ]
        expect(len(archived) == 2, "a WAL segment not archived to both repositories", output)
        return "; ".join(archived)

    def info() -> str:
        stanza = pgbackrest_info(target)
        expect(
            stanza["status"]["code"] == 0, f"stanza status: {stanza['status']['message']}", stanza
        )
        repos = {b["database"]["repo-key"] for b in stanza["backup"]}
        expect(
            repos == {1, 2}, f"backups in repositories {sorted(repos)}, expected 1 and 2", stanza
        )
        return f"status ok, {len(stanza['backup'])} backups in repositories 1 and 2, archive {stanza['archive'][0]['max']}"

    def before() -> str:
        state["markers"] = target.query(target.writer_dsn, CHECKSUM, (service,))[0]
        expect(state["markers"][0] == 5, f"{state['markers'][0]} marker rows, expected 5")
        state["cutoff"] = datetime.now(UTC) - timedelta(seconds=1)
        state["table"] = target.query(target.writer_dsn, TABLE_CHECKSUM, (state["cutoff"],))[0]
        return f"markers {state['markers'][0]} rows md5 {state['markers'][1]}; table {state['table'][0]} rows md5 {state['table'][1]}"

    def differential() -> str:
        started = time.monotonic()
        target.cluster(
            "pgbackrest-repo", "--stanza=apm", "--repo=1", "--type=diff", "backup", timeout=1800
        )
        latest = [b for b in pgbackrest_info(target)["backup"] if b["database"]["repo-key"] == 1][
            -1
        ]
        expect(latest["type"] == "diff", f"the latest backup of repo1 is {latest['type']}", latest)
        state["label"] = latest["label"]
        return (
            f"{latest['label']} in {time.monotonic() - started:.1f} s, {latest['info']['delta']} bytes changed "
            f"of {latest['info']['size']}"
        )

    def restore() -> str:
        scratch = Path(target.layout["STATE"]) / "scratch" / f"step4-{stamp()}"
        state["scratch"] = scratch
        started = time.monotonic()
        restore_to_scratch(target, state["label"], scratch)
        return f"{state['label']} restored into {scratch.relative_to(ROOT)} and recovered in {time.monotonic() - started:.1f} s"

    def verify() -> str:
        dsn = scratch_dsn(state["scratch"])
        markers = target.query(dsn, CHECKSUM, (service,))[0]
        table = target.query(dsn, TABLE_CHECKSUM, (state["cutoff"],))[0]
        expect(
            markers == state["markers"],
            "the markers differ after the restore",
            {"before": state["markers"], "restored": markers},
        )
        expect(
            table == state["table"],
            "the table differs after the restore",
            {"before": state["table"], "restored": table},
        )
        return f"markers and {table[0]} rows older than the backup: same md5 as on the primary"

    step.newman(4, keys, service=service)
    step.check("pgbackrest check", check)
    step.check("pgbackrest info: both repositories hold backups", info)
    step.check(
        "checksums of the rows on the primary", before, requires="newman: APM_Observability_Step4"
    )
    step.check(
        "differential backup (repo1)", differential, requires="checksums of the rows on the primary"
    )
    step.check("restore into a scratch directory", restore, requires="differential backup (repo1)")
    step.check(
        "restored rows match by checksum", verify, requires="restore into a scratch directory"
    )
    if "scratch" in state:
        stop_scratch(state["scratch"])


def as_postgres() -> list[str]:
    """PostgreSQL refuses root: its commands run as postgres, as the cluster's do."""
    return (
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
        if os.getuid() == 0
        else []
    )


def scratch_dsn(scratch: Path) -> str:
    return f"host={scratch / 'socket'} port=5999 dbname=apm user=postgres"


def restore_to_scratch(target: Target, label: str, scratch: Path) -> None:
    """pgbackrest restore of LABEL into SCRATCH (as the DATA node runs it), then a server
    on its own socket only, recovering to the end of the backup and promoting."""
    environment = dict(
        line.split("=", 1)
        for line in target.cluster("pgbackrest-env", target.primary()).splitlines()
    )
    environment |= {
        "PGBACKREST_PG1_PATH": str(scratch / "data"),
        "PGBACKREST_PG1_SOCKET_PATH": str(scratch / "socket"),
        "PGBACKREST_PG1_PORT": "5999",
        # Its own spool, lock and log: the primary's archive-push uses theirs meanwhile.
        **{
            f"PGBACKREST_{name.upper()}_PATH": str(scratch / "pgbackrest" / name)
            for name in ("spool", "lock", "log")
        },
    }
    user = as_postgres()
    subdirectories = ("socket", "data", "pgbackrest/spool", "pgbackrest/lock", "pgbackrest/log")
    for sub in subdirectories:
        (scratch / sub).mkdir(mode=0o700, parents=True)
    if user:
        for path in (scratch, scratch / "pgbackrest", *(scratch / sub for sub in subdirectories)):
            shutil.chown(path, "postgres", "postgres")
    pgbackrest = str(Path(target.layout["STATE"]) / "bin" / "pgbackrest-secrets")
    run(
        [
            *user,
            "env",
            "-i",
            *[f"{k}={v}" for k, v in environment.items()],
            pgbackrest,
            "--stanza=apm",
            "--repo=1",
            f"--set={label}",
            "--type=immediate",
            "--target-action=promote",
            "restore",
        ],
        timeout=1800,
    )
    postgres_bin = Path(environment["PATH"].split(":")[1])
    # The instances' own settings (recovery needs max_connections etc. as on the primary),
    # then this one's: its socket only, no archiving.
    options = target.cluster("postgres-options", target.primary()).splitlines()[
        1::2
    ]  # -c, value, ...
    options = [o for o in options if o.split("=")[0] not in SCRATCH_OVERRIDES]
    # Its socket only, in a directory only postgres (and root) may enter: trusted there, so
    # that the step reads the restored rows without the cluster's passwords.
    (scratch / "hba.conf").write_text("local all all trust\n")
    options += [
        "port=5999",
        "listen_addresses=",
        f"unix_socket_directories={scratch / 'socket'}",
        "archive_mode=off",
        f"hba_file={scratch / 'hba.conf'}",
    ]
    try:
        run(
            [
                *user,
                "env",
                "-i",
                *[f"{k}={v}" for k, v in environment.items()],
                str(postgres_bin / "pg_ctl"),
                "-D",
                str(scratch / "data"),
                "-w",
                "-t",
                "300",
                "-l",
                str(scratch / "postgres.log"),
                "-o",
                " ".join(f"-c {shlex.quote(o)}" for o in options),
                "start",
            ],
            timeout=400,
        )
    except CommandFailed as exc:
        raise Failed(
            "the restored server did not start", exc.output + "\n" + server_log(scratch)
        ) from exc
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if not in_recovery(scratch):
            return
        time.sleep(1)
    raise Failed("the restored server did not finish recovery within 300 s", server_log(scratch))


def in_recovery(scratch: Path) -> bool:
    try:
        with psycopg.connect(scratch_dsn(scratch), connect_timeout=5) as connection:
            return connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.OperationalError:
        return True  # not accepting connections yet


SCRATCH_OVERRIDES = {
    "port",
    "listen_addresses",
    "unix_socket_directories",
    "archive_mode",
    "archive_command",
}


def server_log(scratch: Path) -> str:
    log = scratch / "postgres.log"
    return log.read_text()[-8000:] if log.exists() else "(no server log)"


def stop_scratch(scratch: Path) -> None:
    pg_ctl = "/usr/lib/postgresql/15/bin/pg_ctl"
    command = [*as_postgres(), pg_ctl, "-D", str(scratch / "data"), "-m", "fast", "-w", "stop"]
    subprocess.run(command, capture_output=True, check=False, timeout=120)
    shutil.rmtree(scratch, ignore_errors=True)


# --- Step 5 -------------------------------------------------------------------------------

KPI_SQL = """
SELECT count(*), count(*) FILTER (WHERE status_code >= 500), avg(latency_ms)::float, max(latency_ms)::float,
       percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms),
       (count(*) FILTER (WHERE status_code < 500 AND latency_ms <= apdex_t_ms)
        + count(*) FILTER (WHERE status_code < 500 AND latency_ms > apdex_t_ms AND latency_ms <= 4 * apdex_t_ms) / 2.0)
       / nullif(count(*), 0)
FROM api_request WHERE project_id = %s AND time >= %s AND time < %s {extra}
"""
ENDPOINT_SQL = """
SELECT service, endpoint, method, count(*), count(*) FILTER (WHERE status_code >= 500)
FROM api_request WHERE project_id = %s AND time >= %s AND time < %s GROUP BY 1, 2, 3
"""
# The sketch's documented bound (docs/ANALYTICS.md): within (gamma-1)/(gamma+1) = 0.89 % of the
# exact percentile_disc of the same requests.
PERCENTILE_TOLERANCE = 0.0089


def window() -> tuple[datetime, datetime]:
    end = (datetime.now(UTC) + timedelta(minutes=1)).replace(
        minute=0, second=0, microsecond=0
    ) + timedelta(hours=1)
    return end - timedelta(hours=48), end


def close(value: float, expected: float, tolerance: float) -> bool:
    return abs(value - expected) <= tolerance * max(abs(expected), 1e-9)


def step5(step: Step) -> None:
    target = step.target
    project_slug = f"step5-{stamp()}"
    keys = keys_for(step, project_slug)
    start, end = window()
    params = {
        "from": start.isoformat().replace("+00:00", "Z"),
        "to": end.isoformat().replace("+00:00", "Z"),
    }
    state: dict = {}

    def api_get(path: str, **query) -> dict:
        with http(target) as client:
            response = client.get(
                f"{target.base_url}{path}", params={**params, **query}, headers=bearer(keys.api_key)
            )
        expect(
            response.status_code == 200, f"{path} answered {response.status_code}", response.text
        )
        return response.json()

    def save(name: str, document: object) -> None:
        (step.directory / name).write_text(json.dumps(document, indent=2) + "\n")

    def seed() -> str:
        output = target.manage(
            "seed_apirequests",
            "--count",
            "3000",
            "--days",
            "1",
            "--via",
            "api",
            "--url",
            target.monitoring_url,
            "--api-key",
            keys.api_key,
            "--project",
            project_slug,
            "--seed",
            "5",
            "--batch-size",
            "500",
            timeout=1800,
        )
        return output.strip().splitlines()[-1]

    def ingest() -> str:
        now = datetime.now(UTC)
        state["api_batch"] = [
            {
                "event_id": str(uuid.uuid4()),
                "time": (now - timedelta(seconds=30 + i)).isoformat(),
                "service": "api",
                "path": f"/v1/orders/{1000 + i}",
                "method": "POST" if i % 3 else "GET",
                "status_code": 503 if i % 10 == 0 else 200,
                "latency_ms": 20.0 + i,
            }
            for i in range(50)
        ]
        with http(target) as client:
            response = client.post(
                f"{target.base_url}/api/v1/ingest/",
                json=state["api_batch"],
                headers=bearer(keys.api_key),
            )
        expect(
            response.status_code == 200, f"ingest answered {response.status_code}", response.text
        )
        body = response.json()
        save("step5_ingest.json", body)
        expect(body["accepted"] == 50 and body["rejected"] == 0, "not every event accepted", body)
        return f"50 events for service api: {body}"

    def refresh() -> str:
        target.manage("refresh_apirequest_hourly")
        target.manage("refresh_apirequest_daily")
        return "refresh_apirequest_hourly and refresh_apirequest_daily"

    def compare(kpis: dict, extra: str = "", args: tuple = ()) -> str:
        project = target.project_of(keys.api_key)
        hits, errors, avg, peak, percentiles, apdex = target.query(
            target.writer_dsn, KPI_SQL.format(extra=extra), (project, start, end, *args)
        )[0]
        differences = {}
        if (kpis["hits"], kpis["errors"]) != (hits, errors):
            differences["hits, errors"] = [(kpis["hits"], kpis["errors"]), (hits, errors)]
        for name, value in (("avg", avg), ("max", peak)):
            if not close(kpis["latency_ms"][name], value, 1e-6):
                differences[name] = [kpis["latency_ms"][name], value]
        for name, value in zip(("p50", "p95", "p99"), percentiles, strict=True):
            if not close(kpis["latency_ms"][name], value, PERCENTILE_TOLERANCE):
                differences[name] = [kpis["latency_ms"][name], value]
        if not close(kpis["apdex"], float(apdex), 0.0011):
            differences["apdex"] = [kpis["apdex"], float(apdex)]
        expect(
            not differences,
            f"API and SQL differ on {', '.join(differences)}",
            {"api": kpis, "differences": differences},
        )
        return (
            f"{hits} hits, {errors} errors, p95 {kpis['latency_ms']['p95']:.1f} ms (SQL percentile_disc {percentiles[1]:.1f}), "
            f"Apdex {kpis['apdex']:.4f} (SQL {float(apdex):.4f}): percentiles within the sketch's 0.89 %"
        )

    def kpis() -> str:
        body = api_get("/api/v1/kpis/")
        save("step5_kpis.json", body)
        return compare(body)

    def kpis_service() -> str:
        body = api_get("/api/v1/kpis/", service="api")
        save("step5_kpis_service_api.json", body)
        expect(
            body["hits"] == 50 and body["errors"] == 5,
            "service api: not the 50 events, 5 errors ingested",
            body,
        )
        return compare(body, "AND service = %s", ("api",))

    def endpoints_sql() -> dict:
        rows = target.query(
            target.writer_dsn, ENDPOINT_SQL, (target.project_of(keys.api_key), start, end)
        )
        return {(s, e, m): (hits, errors) for s, e, m, hits, errors in rows}

    def top_hits() -> str:
        body = api_get("/api/v1/top-endpoints/", by="hits", limit="10")
        save("step5_top_endpoints_hits.json", body)
        sql = endpoints_sql()
        expected = sorted((hits for hits, _ in sql.values()), reverse=True)[:10]
        got = [r["hits"] for r in body["results"]]
        expect(
            got == expected,
            "the ranking's hits are not SQL's ten highest",
            {"api": got, "sql": expected},
        )
        wrong = [
            r
            for r in body["results"]
            if sql[(r["service"], r["endpoint"], r["method"])] != (r["hits"], r["errors"])
        ]
        expect(not wrong, "an endpoint's hits or errors differ from SQL", wrong)
        return f"top 10 of {len(sql)} endpoints, hits {got[0]}..{got[-1]}, each equal to SQL"

    def top_error_rate() -> str:
        body = api_get("/api/v1/top-endpoints/", by="error_rate", limit="10")
        save("step5_top_endpoints_error_rate.json", body)
        sql = {k: v for k, v in endpoints_sql().items() if v[0] >= 20}  # APM_TOP_MIN_HITS
        expected = sorted((errors / hits for hits, errors in sql.values()), reverse=True)[:10]
        got = [r["error_rate"] for r in body["results"]]
        expect(
            len(got) == len(expected)
            and all(close(a, b, 1e-9) for a, b in zip(got, expected, strict=True)),
            "the error rates are not SQL's ten highest",
            {"api": got, "sql": expected},
        )
        return f"top {len(got)} of {len(sql)} endpoints with 20+ hits, error rate {got[0]:.4f}..{got[-1]:.4f}, equal to SQL"

    if not step.check("seed 3,000 requests through the API", seed):
        raise SystemExit(step.finish())
    step.check("ingest a batch (sample step5_ingest.json)", ingest)
    step.check("refresh the rollups", refresh)
    step.check("KPIs equal the raw SQL computation (step5_kpis.json)", kpis)
    step.check(
        "KPIs of service api equal the batch and SQL (step5_kpis_service_api.json)", kpis_service
    )
    step.check("top endpoints by hits equal SQL (step5_top_endpoints_hits.json)", top_hits)
    step.check(
        "top endpoints by error rate equal SQL (step5_top_endpoints_error_rate.json)",
        top_error_rate,
    )
    step.newman(5, keys)


# --- Step 6 -------------------------------------------------------------------------------

DRILL_FIGURES = (
    "requests",
    "replicas_streaming",
    "rto_seconds",
    "rpo_markers_lost",
    "rpo_seconds",
    "seconds_to_writable",
    "acknowledged_lost",
    "markers_lost",
    "writes_failed",
    "alert_fired_after_seconds",
)


def step6(step: Step) -> None:
    target = step.target
    drills = step.directory / "drills"
    for drill, report_name in DRILLS.items():

        def run_drill(drill=drill, report_name=report_name) -> str:
            target.require_local(f"drill {drill}")
            command = [
                "env",
                "TARGET=local",
                f"DRILL_REPORTS={drills}",
                "bash",
                str(ROOT / "scripts" / "drills" / f"{drill}.sh"),
            ]
            try:
                # Drill 3 may first wait up to 21 minutes for an earlier outage's alert to resolve.
                run(command, timeout=3600)
            except CommandFailed as exc:
                raise Failed(
                    f"{drill} failed: {last_reason(drills / f'{report_name}.json')}", exc.output
                ) from exc
            document = json.loads((drills / f"{report_name}.json").read_text())
            expect(
                document.get("result") == "passed", f"{drill}: {document.get('reason')}", document
            )
            figures = [f"{k} {document[k]}" for k in DRILL_FIGURES if k in document]
            return f"passed ({', '.join(figures) or 'see the report'}); report drills/{report_name}.json"

        step.check(f"drill {drill}", run_drill)


def last_reason(report: Path) -> str:
    try:
        return json.loads(report.read_text()).get("reason", "no reason in its report")
    except (OSError, ValueError):
        return "no report written"


STEPS = {1: step1, 2: step2, 3: step3, 4: step4, 5: step5, 6: step6}
