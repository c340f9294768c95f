"""The DATA node's database scripts, run for real against local PostgreSQL servers.

No Docker engine runs here, so the scripts the containers run are executed directly,
as the database's own user, with the environment Compose gives them
(docker/cluster/docker-compose.data.yml): 001_roles.sh and primary-setup.sh on a fresh
primary, then replica-entrypoint.sh, which must clone it over TLS through its slot and
stream from it, and on its next start resume streaming without cloning again. What
this cannot cover is the image itself (its entrypoint, paths and user); `make validate`
checks the Compose files statically.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from apm_platform.embedded_db import EmbeddedPostgres
from apm_platform.processes import free_port
from apm_platform.tests.system_processes import (
    PG_BIN,
    ROOT,
    give_to_server_user,
    requires_system_postgres,
    self_signed_certificate,
    server_user_identity,
)

pytestmark = [pytest.mark.slow, requires_system_postgres]

ROLES_SCRIPT = ROOT / "docker/initdb/001_roles.sh"
PRIMARY_SETUP = ROOT / "docker/cluster/replica/primary-setup.sh"
REPLICA_ENTRYPOINT = ROOT / "docker/cluster/replica/replica-entrypoint.sh"
PASSWORDS = {
    "db_writer_password": "writer-pw",
    "db_reader_password": "reader-pw",
    "db_replication_password": "replication-pw",
    "db_monitor_password": "monitor-pw",
}


def script_env(**extra: str) -> dict:
    return {
        "PATH": f"{PG_BIN}:/usr/bin:/bin",
        "HOME": str(Path(tempfile.gettempdir())),
        **extra,
    }


def run_script(script: Path, **env: str) -> str:
    result = subprocess.run(
        ["bash", str(script)],
        env=script_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **server_user_identity(),
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster-scripts")
    base.chmod(0o755)
    secrets = base / "secrets"
    secrets.mkdir(mode=0o755)
    for name, value in PASSWORDS.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o644)
    self_signed_certificate(base / "tls", "apm-data")
    return base


@pytest.fixture(scope="module")
def primary(workdir):
    """A fresh primary with TLS on, initialised as the image's entrypoint would."""
    server = EmbeddedPostgres(
        data_dir=workdir / "primary" / "data", port=free_port(), bin_dir=PG_BIN
    )
    server.start()
    tls = workdir / "tls"
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET ssl = on")
        for setting, path in (
            ("ssl_cert_file", tls / "public.crt"),
            ("ssl_key_file", tls / "private.key"),
        ):
            statement = sql.SQL("ALTER SYSTEM SET {} = {}").format(
                sql.Identifier(setting), sql.Literal(str(path))
            )
            conn.execute(statement)
        conn.execute("SELECT pg_reload_conf()")
    env = {
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "apm",
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGDATA": str(server.data_dir),
        "SECRETS_DIR": str(workdir / "secrets"),
        "REPLICA_SLOTS": "replica1,replica2",
    }
    run_script(ROLES_SCRIPT, **env)
    run_script(PRIMARY_SETUP, **env)
    server._run("pg_ctl", "reload", "-D", str(server.data_dir))
    yield server
    server.stop()


def connect(port: int, user: str, workdir: Path, sslmode: str = "verify-ca") -> psycopg.Connection:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        dbname="apm",
        user=user,
        password=PASSWORDS.get(f"db_{user.removeprefix('apm_')}_password", ""),
        sslmode=sslmode,
        sslrootcert=str(workdir / "tls" / "public.crt"),
        autocommit=True,
        connect_timeout=5,
    )


@contextlib.contextmanager
def replica_process(workdir: Path, primary: EmbeddedPostgres, port: int):
    """replica-entrypoint.sh as the container runs it; yields its log file."""
    home = workdir / "replica1"
    home.mkdir(exist_ok=True)
    give_to_server_user(home)
    log = home / "entrypoint.log"
    env = script_env(
        PGDATA=str(home / "data"),
        PRIMARY_HOST=primary.host,
        PRIMARY_PORT=str(primary.port),
        REPLICA_SLOT="replica1",
        SECRETS_DIR=str(workdir / "secrets"),
        DB_TLS_CA_FILE=str(workdir / "tls" / "public.crt"),
    )
    # max_connections as on the primary: a standby refuses to run with fewer.
    options = [
        f"port={port}",
        "listen_addresses=127.0.0.1",
        "unix_socket_directories=",
        "max_connections=200",
    ]
    command = ["bash", str(REPLICA_ENTRYPOINT)]
    for option in options:
        command += ["-c", option]
    with open(log, "a") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, **server_user_identity()
        )
    try:
        yield log
    finally:
        process.send_signal(signal.SIGINT)  # postgres: fast shutdown
        process.wait(timeout=60)


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except psycopg.Error as exc:
            last_error = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last error: {last_error}")


def test_the_primary_only_accepts_tls_with_passwords_from_the_network(primary, workdir):
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry|SSL off"):
        connect(primary.port, "apm_writer", workdir, sslmode="disable").close()
    with connect(primary.port, "apm_writer", workdir) as conn:
        assert conn.execute(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone() == (True,)
    with connect(primary.port, "apm_monitor", workdir) as conn:
        assert conn.execute("SELECT pg_has_role('pg_monitor', 'member')").fetchone() == (True,)


def test_the_primary_has_a_slot_per_replica(primary, workdir):
    with connect(primary.port, "apm_monitor", workdir) as conn:
        slots = conn.execute(
            "SELECT slot_name, slot_type FROM pg_replication_slots ORDER BY 1"
        ).fetchall()
    assert slots == [("replica1", "physical"), ("replica2", "physical")]


def test_a_replica_clones_the_primary_streams_and_resumes_after_a_restart(primary, workdir):
    port = free_port()
    with connect(primary.port, "apm_writer", workdir) as writer:
        writer.execute("CREATE TABLE replicated (id int)")
        writer.execute("INSERT INTO replicated VALUES (1)")

    with replica_process(workdir, primary, port) as log:
        replica = wait_for(
            lambda: connect(port, "apm_reader", workdir), what="the replica to accept"
        )
        with replica:
            assert replica.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            with connect(primary.port, "apm_writer", workdir) as writer:
                writer.execute("INSERT INTO replicated VALUES (2)")
            wait_for(lambda: replica.execute("SELECT count(*) FROM replicated").fetchone() == (2,),
                     what="row 2 on the replica")  # fmt: skip
            # The app's router uses a replica only while it sees its WAL receiver stream,
            # as apm_reader: 001_roles.sh grants it pg_read_all_stats, else the status is NULL.
            receiver = replica.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            assert receiver == ("streaming",)
        with connect(primary.port, "apm_monitor", workdir) as monitor:
            streaming = monitor.execute(
                "SELECT application_name, state, ssl FROM pg_stat_replication "
                "JOIN pg_stat_ssl USING (pid)"
            ).fetchall()
            assert streaming == [("replica1", "streaming", True)]
            active = monitor.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'replica1'"
            ).fetchone()
            assert active == (True,)
    assert log.read_text().count("cloning") == 1

    with connect(primary.port, "apm_writer", workdir) as writer:
        writer.execute("INSERT INTO replicated VALUES (3)")  # while the replica is down
    with replica_process(workdir, primary, port) as log:
        replica = wait_for(
            lambda: connect(port, "apm_reader", workdir), what="the restarted replica"
        )
        with replica:
            wait_for(lambda: replica.execute("SELECT count(*) FROM replicated").fetchone() == (3,),
                     what="the row written while the replica was down")  # fmt: skip
    assert log.read_text().count("cloning") == 1, "a restart must not clone again"
