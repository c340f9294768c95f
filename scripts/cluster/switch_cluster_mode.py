#!/usr/bin/env python3
"""Render the stacks' configuration from configs/cluster/cluster.yml (single or multi).

    scripts/cluster/switch_cluster_mode.py [--config PATH] [--mode single|multi]

single: docker/.env.ports (docker/.env.ports.example with the YAML's ports), for
        docker/docker-compose.yml on one host.
multi:  docker/cluster/.env.cluster (infra/ansible/templates/env.cluster.j2), the
        Prometheus targets of the three nodes (configs/cluster/targets/*.yml), the APP
        node's allow list of its /metrics port (configs/cluster/nginx/metrics-allow.conf,
        `monitoring.network` only), and the app's database URLs as secrets
        (docker/secrets/cluster_database_url and cluster_database_replica_urls, from the
        passwords `make secrets` generated).

The configuration is checked first; a bad value is reported with its path
(`nodes.data.address: '10.0.0' is not an IP address`) and nothing is written.
Needs PyYAML and Jinja2 (requirements-ops.txt; python3-yaml python3-jinja2 on a node).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from pathlib import Path
from urllib.parse import quote

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "configs/cluster/cluster.yml"
ENV_CLUSTER_TEMPLATE = ROOT / "infra/ansible/templates/env.cluster.j2"
ENV_PORTS_EXAMPLE = ROOT / "docker/.env.ports.example"
SINGLE_PORT_VARIABLES = {
    "HTTP_PORT": "http",
    "HTTPS_PORT": "https",
    "DB_PORT": "db",
    "PROMETHEUS_PORT": "prometheus",
    "GRAFANA_PORT": "grafana",
}
# The app reaches the DATA node by this name, which the TLS certificate carries.
DATA_HOST = "apm-data"
DB_TLS_QUERY = "sslmode=verify-full&sslrootcert=/etc/apm/tls/ca.crt"
REPLICAS = ("replica1", "replica2")


class ConfigError(Exception):
    pass


def load_config(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(
            f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} does not exist: "
            "copy configs/cluster/cluster.example.yml to it and edit it"
        )
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config


def lookup(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(f"{dotted}: missing")
        value = value[part]
    return value


def validate(config: dict, mode: str) -> list[str]:
    """Every problem in the configuration for `mode`, each naming its field."""
    problems = []

    def check(dotted: str, test, reason: str) -> None:
        try:
            value = lookup(config, dotted)
        except ConfigError as exc:
            problems.append(str(exc))
            return
        if not test(value):
            problems.append(f"{dotted}: {value!r} {reason}")

    def is_port(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535

    def is_ip(value) -> bool:
        try:
            ipaddress.ip_address(str(value))
        except ValueError:
            return False
        return True

    def is_network(value) -> bool:
        try:
            ipaddress.ip_network(str(value))  # strict: no host bits set (10.0.0.1/8)
        except ValueError:
            return False
        return True

    for name in SINGLE_PORT_VARIABLES.values():
        check(f"ports.single.{name}", is_port, "is not a port (1-65535)")
    if mode == "single":
        return problems

    check("version", matching(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"), "is not an image tag")
    check("hostname", matching(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?"), "is not a host name")
    for node in ("app", "data", "control"):
        check(f"nodes.{node}.address", is_ip, "is not an IP address")
    node_ports = {
        "data": [
            "primary",
            *REPLICAS,
            "exporter_primary",
            "exporter_replica1",
            "exporter_replica2",
        ],
        "control": ["minio_console", "grafana_https", "prometheus_https"],
        "app": ["http", "https", "metrics"],
    }
    for node, names in node_ports.items():
        for name in names:
            check(f"ports.{node}.{name}", is_port, "is not a port (1-65535)")
        problems += _clashing_ports(config, node, names)
    check("ports.node_exporter", is_port, "is not a port (1-65535)")
    check(
        "database.max_slot_wal_keep_size", matching(r"\d+(kB|MB|GB|TB)"), "is not a size like 10GB"
    )
    check(
        "database.synchronous_standby_names",
        is_standby_names,
        f"is not empty (asynchronous) or like 'FIRST 1 ({', '.join(REPLICAS)})' "
        f"(FIRST or ANY, a count, names among {', '.join(REPLICAS)})",
    )
    check("backup.time", matching(r"([01]\d|2[0-3]):[0-5]\d"), "is not a time HH:MM (UTC)")
    check(
        "backup.full_weekday",
        lambda v: v in range(1, 8),
        "is not an ISO weekday (1 = Monday ... 7 = Sunday)",
    )
    for bucket in ("hot_bucket", "cold_bucket"):
        bucket_name = matching(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
        check(f"backup.{bucket}", bucket_name, "is not an S3 bucket name")
    check("monitoring.prometheus_retention", matching(r"\d+[smhdwy]"), "is not a duration like 30d")
    check("monitoring.network", is_network, "is not a network like 10.0.0.30/32")
    check(
        "app.web_concurrency",
        lambda v: isinstance(v, int) and 1 <= v <= 64,
        "is not a worker count (1-64)",
    )
    return problems


# PostgreSQL's synchronous_standby_names: [FIRST|ANY n] (names) or a bare list of names.
STANDBY_NAMES = re.compile(
    r"(?:(?P<method>FIRST|ANY) (?P<count>\d+) \((?P<listed>[^()]*)\))|(?P<bare>[^()]*)"
)


def is_standby_names(value) -> bool:
    """Empty, or a synchronous_standby_names naming the replicas (their application_name)
    with a count they can meet."""
    if value == "":
        return True
    match = STANDBY_NAMES.fullmatch(str(value))
    if not match:
        return False
    names = [name.strip() for name in (match["listed"] or match["bare"]).split(",")]
    count = int(match["count"] or 1)
    return (
        set(names) <= set(REPLICAS) and len(set(names)) == len(names) and 1 <= count <= len(names)
    )


def matching(pattern: str):
    """A check that the whole value, as text, matches `pattern`."""
    return lambda value: re.fullmatch(pattern, str(value)) is not None


def _clashing_ports(config: dict, node: str, names: list[str]) -> list[str]:
    """Two services of one node published on the same port (node-exporter runs on each)."""
    try:
        ports = {name: lookup(config, f"ports.{node}.{name}") for name in names}
        ports["node_exporter"] = lookup(config, "ports.node_exporter")
    except ConfigError:
        return []  # reported as missing already
    seen: dict[object, str] = {}
    problems = []
    for name, port in ports.items():
        if port in seen:
            problems.append(
                f"ports.{node}.{name}: {port} is also used by {seen[port]} on the {node} node"
            )
        seen.setdefault(port, name)
    return problems


def render_env_ports(config: dict) -> str:
    """docker/.env.ports.example, its values replaced by the YAML's ports."""
    lines = []
    for line in ENV_PORTS_EXAMPLE.read_text().splitlines():
        name, sep, _ = line.partition("=")
        if sep and name in SINGLE_PORT_VARIABLES:
            line = f"{name}={config['ports']['single'][SINGLE_PORT_VARIABLES[name]]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_env_cluster(config: dict) -> str:
    environment = jinja2.Environment(  # noqa: S701 - renders an env file, not HTML
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    return environment.from_string(ENV_CLUSTER_TEMPLATE.read_text()).render(**config)


def render_targets(config: dict) -> dict[str, list[dict]]:
    """file_sd target files for Prometheus on the CONTROL node: TLS to every node."""
    ports = config["ports"]

    def target(host: str, port: int, **labels: str) -> dict:
        return {"targets": [f"{host}:{port}"], "labels": {"__scheme__": "https", **labels}}

    return {
        "apm-web.yml": [target("apm-app", ports["app"]["metrics"], node="app")],
        "postgres.yml": [
            target("apm-data", ports["data"]["exporter_primary"], node="data", role="primary"),
            *(
                target(
                    "apm-data",
                    ports["data"][f"exporter_{replica}"],
                    node="data",
                    role="replica",
                    instance_name=replica,
                )
                for replica in REPLICAS
            ),
        ],
        "node.yml": [
            target(f"apm-{node}", ports["node_exporter"], node=node)
            for node in ("app", "data", "control")
        ],
        # Prometheus itself, inside its container: plain HTTP.
        "prometheus.yml": [{"targets": ["localhost:9090"]}],
    }


def render_metrics_allowlist(config: dict) -> str:
    """The one allow line of the APP node's /metrics port (docker/nginx/conf.d/default.conf
    includes it before `deny all`): the network Prometheus scrapes from, nothing else."""
    network = ipaddress.ip_network(str(config["monitoring"]["network"]))
    return (
        "# Rendered by scripts/cluster/switch_cluster_mode.py from monitoring.network.\n"
        f"allow {network};\n"
    )


def render_database_urls(config: dict, secrets_dir: Path) -> dict[str, str]:
    """The app's DATABASE_URL and DATABASE_REPLICA_URLS, with the generated passwords."""
    passwords = {}
    for role in ("writer", "reader"):
        path = secrets_dir / f"db_{role}_password"
        if not path.exists():
            raise ConfigError(f"{path} does not exist: run `make secrets` first")
        passwords[role] = quote(path.read_text().strip(), safe="")
    ports = config["ports"]["data"]
    primary = f"postgres://apm_writer:{passwords['writer']}@{DATA_HOST}:{ports['primary']}/apm?{DB_TLS_QUERY}"
    replicas = ",".join(
        f"postgres://apm_reader:{passwords['reader']}@{DATA_HOST}:{ports[replica]}/apm?{DB_TLS_QUERY}"
        for replica in REPLICAS
    )
    return {
        "cluster_database_url": primary + "\n",
        "cluster_database_replica_urls": replicas + "\n",
    }


def write(path: Path, content: str, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    if private:
        path.chmod(0o600)  # scripts/dev/bootstrap.sh sets the group containers read with
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def switch(config: dict, mode: str, root: Path = ROOT) -> None:
    if mode == "single":
        write(root / "docker/.env.ports", render_env_ports(config))
        return
    write(root / "docker/cluster/.env.cluster", render_env_cluster(config))
    for name, targets in render_targets(config).items():
        write(root / "configs/cluster/targets" / name, yaml.safe_dump(targets, sort_keys=False))
    write(root / "configs/cluster/nginx/metrics-allow.conf", render_metrics_allowlist(config))
    for name, content in render_database_urls(config, root / "docker/secrets").items():
        write(root / "docker/secrets" / name, content, private=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--mode", choices=("single", "multi"), help="default: the YAML's `mode`")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        mode = args.mode or config.get("mode")
        if mode not in ("single", "multi"):
            raise ConfigError(f"mode: {mode!r} is not single or multi")
        problems = validate(config, mode)
        if problems:
            raise ConfigError("\n".join(problems))
        switch(config, mode)
    except ConfigError as exc:
        print(f"switch_cluster_mode: {exc}", file=sys.stderr)
        return 2
    print(f"switch_cluster_mode: {mode} node configuration rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
