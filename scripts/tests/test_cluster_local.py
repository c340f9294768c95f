"""The local cluster's layout (scripts/cluster/local-env.sh, local.sh) and the drills'
report writer (scripts/drills/lib.sh), without starting anything.

The cluster itself and the drills run for real in CI (`.ci/run`: make cluster-local, the
four drills); these tests pin what must hold for that to mean something: the local
PostgreSQL instances get the options the Compose DATA stack gives its containers, the
loopback ports never collide, and a drill's report is valid JSON with typed values.
Run by `make validate` (the ops virtualenv).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCAL_ENV = ROOT / "scripts/cluster/local-env.sh"


def bash(script: str, **env: str) -> str:
    result = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(ROOT), **env},
    )
    return result.stdout


def ports(**env: str) -> dict[str, int]:
    output = bash(f"source {LOCAL_ENV}; set | grep '^PORT_'", **env)
    return {name: int(value) for name, value in re.findall(r"^(PORT_\w+)=(\d+)$", output, re.M)}


def compose_postgres_options() -> dict[str, str]:
    """x-postgres-options of docker-compose.data.yml as {setting: value}, ${VAR:-default}
    replaced by its default."""
    data = yaml.safe_load((ROOT / "docker/cluster/docker-compose.data.yml").read_text())
    options = data["x-postgres-options"]
    settings = [options[i + 1] for i, flag in enumerate(options) if flag == "-c"]
    return {
        name: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
        for name, value in (setting.split("=", 1) for setting in settings)
    }


def local_postgres_options(node: str) -> dict[str, str]:
    output = bash(
        f"scripts/cluster/local.sh postgres-options {node}", CLUSTER_LOCAL_DIR="/nonexistent"
    )
    lines = output.splitlines()
    assert lines[::2] == ["-c"] * (len(lines) // 2)
    return dict(setting.split("=", 1) for setting in lines[1::2])


@pytest.mark.parametrize("node", ["primary", "replica1", "replica2"])
def test_each_instance_gets_the_options_of_the_compose_data_stack(node):
    shipped = compose_postgres_options()
    local = local_postgres_options(node)
    # The certificate is the same file, mounted elsewhere in the containers.
    paths = {"ssl_cert_file": "public.crt", "ssl_key_file": "private.key"}
    for name, value in shipped.items():
        if name in paths:
            assert local[name].endswith(f"/certs/{paths[name]}"), name
        else:
            assert local[name] == value, name
    # What only one machine needs: where each instance listens.
    assert set(local) - set(shipped) == {"listen_addresses", "port", "unix_socket_directories"}
    assert local["listen_addresses"] == "127.0.0.1"


def test_ports_are_distinct_and_inside_the_checkouts_block():
    chosen = ports()
    base = min(chosen.values())
    assert len(set(chosen.values())) == len(chosen)
    assert all(base <= port < base + 50 for port in chosen.values())
    # Below Linux' ephemeral range, in steps of 50 from 20000.
    assert 20000 <= base and max(chosen.values()) < 32768 and (base - 20000) % 50 == 0


def test_the_base_port_follows_the_setting():
    chosen = ports(CLUSTER_LOCAL_BASE_PORT="25000")
    assert chosen["PORT_DB_PRIMARY"] == 25000
    assert min(chosen.values()) == 25000


def test_the_pgbackrest_variables_name_real_options():
    """Every PGBACKREST_* variable local.sh sets is an option of pgBackRest 2.45 (an unknown
    one would only be warned about, and the shipped value silently kept)."""
    text = (ROOT / "scripts/cluster/local.sh").read_text()
    names = set(re.findall(r"\bPGBACKREST_([A-Z0-9_$]+?)=", text))
    names = {name.replace("${repo}", "1") for name in names}
    shipped = (ROOT / "docker/cluster/pgbackrest-db.conf").read_text() + (
        ROOT / "docker/backup/pgbackrest-server.conf"
    ).read_text()
    options = {line.split("=", 1)[0].strip() for line in shipped.splitlines() if "=" in line}
    # Set in neither shipped file but documented pgBackRest options.
    extra = {"log-path", "lock-path", "pg1-port", "pg1-socket-path", "spool-path", "config"}
    for name in names:
        option = name.lower().replace("_", "-")
        assert option in options | extra, option


def test_a_report_is_json_with_typed_values(tmp_path):
    script = f"""
        TARGET=local DRILL_REPORTS={tmp_path} DRILL_WORK={tmp_path} DRILLS_PY=python3
        source scripts/drills/lib.sh
        report 99_example result=passed seconds=1.5 count=3 flag=true empty=null \\
            'text=say "hi" \\ bye' 'nested={{"a": [1, 2]}}' list='["x"]'
    """
    bash(script)
    document = json.loads((tmp_path / "99_example.json").read_text())
    assert document["drill"] == "99_example" and document["target"] == "local"
    assert document["seconds"] == 1.5 and document["count"] == 3
    assert document["flag"] is True and document["empty"] is None
    assert document["text"] == 'say "hi" \\ bye'
    assert document["nested"] == {"a": [1, 2]} and document["list"] == ["x"]


def test_first_ack_after_finds_the_first_acknowledgement_at_or_after_a_time(tmp_path):
    acked = tmp_path / "markers.jsonl"
    times = [10.5, 20.25, 30.0]
    acked.write_text(
        "".join(json.dumps({"event_id": str(i), "acked_at": t}) + "\n" for i, t in enumerate(times))
    )
    script = f"""
        TARGET=local DRILL_REPORTS={tmp_path} DRILL_WORK={tmp_path} DRILLS_PY=python3
        source scripts/drills/lib.sh
        MARKER_FILE={acked}
        first_ack_after 15; first_ack_after 30; first_ack_after 31 || true
    """
    assert bash(script).split() == ["20.25", "30.0"]


def test_the_outage_a_client_sees_starts_with_its_first_failed_write(tmp_path):
    markers = tmp_path / "markers.jsonl"
    markers.write_text("")
    times = [5.0, 12.5, 13.0]
    lines = [json.dumps({"event_id": str(i), "failed_at": at}) for i, at in enumerate(times)]
    Path(f"{markers}.failures").write_text("\n".join(lines) + "\n")
    script = f"""
        TARGET=local DRILL_REPORTS={tmp_path} DRILL_WORK={tmp_path} DRILLS_PY=python3
        source scripts/drills/lib.sh
        MARKER_FILE={markers}
        outage_seen_at 10; outage_seen_at 14
    """
    # No failure after 14: the outage is taken to start at the time asked about.
    assert bash(script).split() == ["12.5", "14"]
