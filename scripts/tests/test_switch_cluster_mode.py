"""scripts/cluster/switch_cluster_mode.py: what it renders, and what it refuses.

Run by `make validate` (the ops virtualenv: PyYAML, Jinja2, check-jsonschema, promtool).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts/cluster"))
sys.path.insert(0, str(ROOT / "scripts/validate"))

import compose  # noqa: E402
import switch_cluster_mode as switch  # noqa: E402

EXAMPLE = ROOT / "configs/cluster/cluster.example.yml"


@pytest.fixture
def config():
    return switch.load_config(EXAMPLE)


@pytest.fixture
def deployment(tmp_path):
    """A scratch copy of the paths the script writes to, with generated passwords."""
    secrets = tmp_path / "docker/secrets"
    secrets.mkdir(parents=True)
    (secrets / "db_writer_password").write_text("w/r+ter pw\n")
    (secrets / "db_reader_password").write_text("reader-pw\n")
    return tmp_path


def test_the_example_env_file_is_the_template_rendered_from_the_example_config(config):
    rendered = switch.render_env_cluster(config)
    assert rendered == (ROOT / "docker/cluster/.env.cluster.example").read_text(), (
        "docker/cluster/.env.cluster.example is out of date: re-render it from "
        "configs/cluster/cluster.example.yml"
    )


def test_every_variable_the_cluster_stacks_use_is_rendered(config):
    rendered = switch.render_env_cluster(config)
    defined = {
        line.split("=", 1)[0] for line in rendered.splitlines() if line and not line.startswith("#")
    }
    used = set()
    for name in ("data", "control", "app"):
        text = (ROOT / f"docker/cluster/docker-compose.{name}.yml").read_text()
        used |= {match[0] or match[3] for match in compose.VARIABLE.findall(text)}
    used.discard("")  # $$, an escaped dollar
    assert used <= defined, f"used by the stacks but not rendered: {sorted(used - defined)}"


def test_multi_renders_env_targets_and_database_urls(config, deployment):
    switch.switch(config, "multi", root=deployment)

    env = (deployment / "docker/cluster/.env.cluster").read_text()
    assert "DATA_NODE_IP=10.0.0.20" in env and "DB_REPLICA2_PORT=5434" in env

    postgres_targets = yaml.safe_load(
        (deployment / "configs/cluster/targets/postgres.yml").read_text()
    )
    assert [t["targets"] for t in postgres_targets] == [
        ["apm-data:9187"],
        ["apm-data:9188"],
        ["apm-data:9189"],
    ]
    assert {t["labels"]["__scheme__"] for t in postgres_targets} == {"https"}
    node_targets = yaml.safe_load((deployment / "configs/cluster/targets/node.yml").read_text())
    assert [t["targets"][0] for t in node_targets] == [
        "apm-app:9100",
        "apm-data:9100",
        "apm-control:9100",
    ]

    url = (deployment / "docker/secrets/cluster_database_url").read_text().strip()
    # Reserved characters of the password are escaped, and TLS verifies apm-data.
    assert url == (
        "postgres://apm_writer:w%2Fr%2Bter%20pw@apm-data:5432/apm"
        "?sslmode=verify-full&sslrootcert=/etc/apm/tls/ca.crt"
    )
    replicas = (
        (deployment / "docker/secrets/cluster_database_replica_urls").read_text().strip().split(",")
    )
    assert [r.split("@")[1].split("/")[0] for r in replicas] == ["apm-data:5433", "apm-data:5434"]
    assert all(r.startswith("postgres://apm_reader:reader-pw@") for r in replicas)
    assert (deployment / "docker/secrets/cluster_database_url").stat().st_mode & 0o077 == 0


def test_single_renders_the_ports_file_from_the_example(config, deployment):
    config["ports"]["single"]["https"] = 8443
    switch.switch(config, "single", root=deployment)
    rendered = (deployment / "docker/.env.ports").read_text().splitlines()
    example = (ROOT / "docker/.env.ports.example").read_text().splitlines()
    assert "HTTPS_PORT=8443" in rendered
    assert len(rendered) == len(example)
    assert [line for line in rendered if line.startswith("#")] == [
        line for line in example if line.startswith("#")
    ]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("nodes.data.address", "10.0.0", "nodes.data.address: '10.0.0' is not an IP address"),
        ("ports.data.replica1", 70000, "ports.data.replica1: 70000 is not a port"),
        (
            "ports.control.grafana_https",
            9443,
            "ports.control.prometheus_https: 9443 is also used by grafana_https",
        ),
        ("backup.time", "25:00", "backup.time: '25:00' is not a time HH:MM"),
        ("backup.full_weekday", 0, "backup.full_weekday: 0 is not an ISO weekday"),
        (
            "backup.hot_bucket",
            "Bad_Bucket",
            "backup.hot_bucket: 'Bad_Bucket' is not an S3 bucket name",
        ),
        ("hostname", "apm example", "hostname: 'apm example' is not a host name"),
        (
            "database.synchronous_standby_names",
            "FIRST 1 (replica1, replica3)",
            "database.synchronous_standby_names: 'FIRST 1 (replica1, replica3)' is not empty",
        ),
        (
            "database.synchronous_standby_names",
            "ANY 3 (replica1, replica2)",
            "database.synchronous_standby_names: 'ANY 3 (replica1, replica2)' is not empty",
        ),
    ],
)
def test_a_bad_value_is_reported_with_its_field(config, path, value, message):
    broken = copy.deepcopy(config)
    *parents, last = path.split(".")
    target = broken
    for part in parents:
        target = target[part]
    target[last] = value
    problems = switch.validate(broken, "multi")
    assert any(message in problem for problem in problems), problems


def test_a_missing_field_is_reported(config):
    del config["nodes"]["control"]
    assert "nodes.control.address: missing" in switch.validate(config, "multi")


def test_nothing_is_written_when_the_configuration_is_invalid(tmp_path):
    bad = yaml.safe_load(EXAMPLE.read_text())
    bad["nodes"]["app"]["address"] = "not-an-ip"
    config_file = tmp_path / "cluster.yml"
    config_file.write_text(yaml.safe_dump(bad))
    script = ROOT / "scripts/cluster/switch_cluster_mode.py"
    result = subprocess.run(
        [sys.executable, str(script), "--config", str(config_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "nodes.app.address: 'not-an-ip' is not an IP address" in result.stderr
    assert "wrote" not in result.stdout


def test_database_urls_need_the_generated_passwords(config, tmp_path):
    with pytest.raises(switch.ConfigError, match="run `make secrets` first"):
        switch.render_database_urls(config, tmp_path / "missing")


def test_the_rendered_cluster_stacks_pass_the_compose_validator(config, deployment, monkeypatch):
    config["nodes"]["data"]["address"] = "192.168.50.2"
    switch.switch(config, "multi", root=deployment)
    env_file = deployment / "docker/cluster/.env.cluster"
    monkeypatch.setattr(
        compose,
        "STACKS",
        [
            ([f"docker/cluster/docker-compose.{name}.yml"], [str(env_file)])
            for name in ("data", "control", "app")
        ],
    )
    assert compose.main() == 0


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is installed by `make validate`"
)
def test_prometheus_accepts_the_rendered_targets(config, deployment, tmp_path):
    switch.switch(config, "multi", root=deployment)
    prometheus_dir = tmp_path / "prometheus"
    shutil.copytree(
        ROOT / "docker/monitoring",
        prometheus_dir,
        ignore=shutil.ignore_patterns("grafana", "nginx"),
    )
    shutil.rmtree(prometheus_dir / "targets")
    shutil.copytree(deployment / "configs/cluster/targets", prometheus_dir / "targets")
    result = subprocess.run(
        ["promtool", "check", "config", str(prometheus_dir / "prometheus.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("names", "option"),
    [
        ("", "synchronous_standby_names="),
        ("FIRST 1 (replica1, replica2)", "synchronous_standby_names=FIRST 1 (replica1, replica2)"),
    ],
)
def test_every_database_instance_gets_the_replication_mode(config, deployment, names, option):
    config["database"]["synchronous_standby_names"] = names
    assert switch.validate(config, "multi") == []
    switch.switch(config, "multi", root=deployment)
    env_file = str(deployment / "docker/cluster/.env.cluster")
    problems = []
    stack = compose.load_stack(["docker/cluster/docker-compose.data.yml"], [env_file], problems, "")
    assert problems == []
    for instance in ("db-primary", "db-replica1", "db-replica2"):
        command = stack["services"][instance]["command"]
        assert [command[i + 1] for i, flag in enumerate(command) if flag == "-c"].count(option) == 1
