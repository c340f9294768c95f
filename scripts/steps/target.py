"""Where the steps run.

TARGET=local: the local cluster (make cluster-local). Its layout (state directory, ports,
the current primary) comes from scripts/cluster/local-env.sh, and every operation on it
goes through scripts/cluster/local.sh, as the drills' local driver does.

TARGET=deployed: a running stack reached by URLs only: BASE_URL (the app through its
proxy), MONITORING_URL (the app without it), DATABASE_URL (writer), DATABASE_READER_URLS
(the reader on each replica), DATABASE_MONITOR_URL, the API keys. What needs the nodes'
shells (pgBackRest, the drills, the exporters' ports) is reported as skipped there.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
LOCAL_CLUSTER = ROOT / "scripts" / "cluster" / "local.sh"
KEY_PREFIX = re.compile(r"^apm_([0-9a-f]+)_")


class Skipped(Exception):
    """A check that cannot run on this target."""


def run(command: list[str], *, timeout: float = 600, env: dict | None = None) -> str:
    """COMMAND's stdout; a non-zero exit raises with its output (the check's failure)."""
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if result.returncode != 0:
        raise CommandFailed(command, result)
    return result.stdout


class CommandFailed(Exception):
    def __init__(self, command: list[str], result: subprocess.CompletedProcess):
        self.output = (
            f"$ {' '.join(command)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        super().__init__(
            f"{Path(command[0]).name} {' '.join(command[1:3])}: exit {result.returncode}"
        )


@dataclass
class Keys:
    api_key: str  # ingest, read
    admin_api_key: str
    read_api_key: str


@dataclass
class Target:
    name: str
    base_url: str
    monitoring_url: str
    ca_file: Path | None
    writer_dsn: str
    reader_dsns: dict[str, str]  # replica name -> DSN of apm_reader on it
    monitor_dsn: str
    keys: Keys | None = None
    layout: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.name == "local"

    def require_local(self, what: str) -> None:
        if not self.local:
            raise Skipped(
                f"{what} needs the nodes (TARGET=local on this machine, or run on the node)"
            )

    def query(self, dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()

    def project_of(self, key: str) -> int:
        """The project a key belongs to (its lookup prefix, apm_<prefix>_<secret>)."""
        match = KEY_PREFIX.match(key)
        if not match:
            raise ValueError("not an API key of this app")
        rows = self.query(
            self.writer_dsn, "SELECT project_id FROM apm_api_key WHERE prefix = %s", (match[1],)
        )
        if not rows:
            raise LookupError(f"no key with prefix {match[1]}")
        return rows[0][0]

    # --- The local cluster only -------------------------------------------------------

    def cluster(self, *args: str, timeout: float = 900) -> str:
        self.require_local(f"local.sh {args[0]}")
        return run([str(LOCAL_CLUSTER), *args], timeout=timeout)

    def manage(self, *args: str, timeout: float = 900) -> str:
        """manage.py as the APP node runs it (its environment and database URLs)."""
        return self.cluster("manage", *args, timeout=timeout)

    def port(self, name: str) -> int:
        return int(self.layout[f"PORT_{name}"])

    def primary(self) -> str:
        return _current_primary(self.layout)

    def replicas(self) -> list[str]:
        return [node for node in ("primary", "replica1", "replica2") if node != self.primary()]

    def node_dsn(self, role: str, node: str, sslmode: str = "verify-full") -> str:
        password = (
            (Path(self.layout["STATE"]) / "secrets" / f"db_{role}_password").read_text().strip()
        )
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.port(f"DB_{node.upper()}"),
            dbname="apm",
            user=f"apm_{role}",
            password=password,
            sslmode=sslmode,
            sslrootcert=str(self.ca_file),
            connect_timeout=5,
        )


def _current_primary(layout: dict[str, str]) -> str:
    marker = Path(layout["STATE"]) / "run" / "primary"
    return (
        marker.read_text().strip() if marker.exists() and marker.read_text().strip() else "primary"
    )


def local_layout() -> dict[str, str]:
    """The variables of scripts/cluster/local-env.sh, as the cluster's scripts see them."""
    script = f'source "{ROOT}/scripts/cluster/local-env.sh"; for v in STATE BASE_PORT ${{!PORT_@}}; do echo "$v=${{!v}}"; done'
    lines = run(["bash", "-c", script]).splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def local_target() -> Target:
    layout = local_layout()
    state = Path(layout["STATE"])
    if not (state / "run" / "db-primary.pid").exists() and not (state / "run" / "primary").exists():
        raise SystemExit(f"the local cluster has no state under {state}: make cluster-local")
    target = Target(
        name="local",
        base_url=f"https://localhost:{layout['PORT_APP_HTTPS']}",
        monitoring_url=f"http://127.0.0.1:{layout['PORT_WEB']}",
        ca_file=state / "certs" / "public.crt",
        writer_dsn="",
        reader_dsns={},
        monitor_dsn="",
        layout=layout,
    )
    # libpq finds whichever instance accepts writes, as the app's DATABASE_URL does.
    writer = target.node_dsn("writer", "primary")
    ports = ",".join(layout[f"PORT_DB_{node}"] for node in ("PRIMARY", "REPLICA1", "REPLICA2"))
    target.writer_dsn = re.sub(
        r"port=\S+",
        f"port={ports}",
        writer.replace("host=127.0.0.1", "host=127.0.0.1,127.0.0.1,127.0.0.1"),
    )
    target.writer_dsn += " target_session_attrs=read-write"
    target.reader_dsns = {node: target.node_dsn("reader", node) for node in target.replicas()}
    target.monitor_dsn = target.node_dsn("monitor", target.primary())
    return target


def local_keys(target: Target, project: str) -> Keys:
    """Three keys of PROJECT (created if missing) made with the app's own command."""

    def make(scopes, name):
        return target.manage(
            "create_api_key", "--project", project, "--scopes", scopes, "--name", name
        ).strip()

    return Keys(
        make("ingest,read", "steps"),
        make("ingest,read,admin", "steps-admin"),
        make("read", "steps-reader"),
    )


def deployed_target(options) -> Target:
    readers = [url for url in (options.database_reader_urls or "").split(",") if url]
    target = Target(
        name="deployed",
        base_url=options.base_url.rstrip("/"),
        monitoring_url=(options.monitoring_url or options.base_url).rstrip("/"),
        ca_file=Path(options.ca_file) if options.ca_file else None,
        writer_dsn=options.database_url,
        reader_dsns={f"replica{i}": url for i, url in enumerate(readers, 1)},
        monitor_dsn=options.database_monitor_url or options.database_url,
    )
    target.keys = Keys(options.api_key, options.admin_api_key, options.read_api_key)
    return target


def newman_variables(target: Target, keys: Keys, **extra: str) -> dict[str, str]:
    return {
        "base_url": target.base_url,
        "monitoring_url": target.monitoring_url,
        "api_key": keys.api_key,
        "admin_api_key": keys.admin_api_key,
        "read_api_key": keys.read_api_key,
        "expected_replicas": str(len(target.reader_dsns)),
        **extra,
    }
