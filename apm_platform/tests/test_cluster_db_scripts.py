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
import threading
import time
from pathlib import Path

import psycopg
import pytest
import yaml
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
# The image's entrypoint gives the superuser a password (POSTGRES_PASSWORD_FILE).
SUPERUSER_PASSWORD = "superuser-pw"


def script_env(**extra: str) -> dict:
    return {
        "PATH": f"{PG_BIN}:/usr/bin:/bin",
        "HOME": str(Path(tempfile.gettempdir())),
        **extra,
    }


def run_script(script: Path, timeout: float = 60, **env: str) -> str:
    result = subprocess.run(
        ["bash", str(script)],
        env=script_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
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
        conn.execute(
            sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(SUPERUSER_PASSWORD))
        )
    env = primary_env(server, workdir)
    run_script(ROLES_SCRIPT, **env)
    run_script(PRIMARY_SETUP, **env)
    server._run("pg_ctl", "reload", "-D", str(server.data_dir))
    yield server
    server.stop()


def primary_env(server: EmbeddedPostgres, workdir: Path) -> dict:
    """What the image's entrypoint gives the initdb.d scripts (docker-compose.data.yml)."""
    return {
        "POSTGRES_USER": "postgres",
        "POSTGRES_DB": "apm",
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGDATA": str(server.data_dir),
        "SECRETS_DIR": str(workdir / "secrets"),
        "REPLICA_SLOTS": "replica1,replica2",
    }


def connect(port: int, user: str, workdir: Path, sslmode: str = "verify-ca") -> psycopg.Connection:
    password = PASSWORDS.get(f"db_{user.removeprefix('apm_')}_password", "")
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        dbname="apm",
        user=user,
        password=SUPERUSER_PASSWORD if user == "postgres" else password,
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


def test_the_superuser_cannot_log_in_from_the_network_even_with_tls_and_its_password(
    primary, workdir
):
    rejected = r'pg_hba\.conf rejects connection .*user "postgres"'
    with pytest.raises(psycopg.OperationalError, match=rejected):
        connect(primary.port, "postgres", workdir).close()


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


def test_a_primary_in_synchronous_mode_initialises_without_its_replicas(workdir):
    """The image's temporary server at initialisation gets the stack's options, so with
    synchronous replication on it would wait for replicas that can only clone it once it
    is done; the stack's PGOPTIONS lets the initdb.d scripts commit locally."""
    stack = yaml.safe_load((ROOT / "docker/cluster/docker-compose.data.yml").read_text())
    pgoptions = stack["services"]["db-primary"]["environment"]["PGOPTIONS"]
    server = EmbeddedPostgres(
        data_dir=workdir / "sync-primary" / "data", port=free_port(), bin_dir=PG_BIN
    )
    server.start()  # creates the database apm, before any commit waits
    try:
        env = primary_env(server, workdir)
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(
                "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (replica1, replica2)'"
            )
            conn.execute("SELECT pg_reload_conf()")
        run_script(ROLES_SCRIPT, timeout=20, PGOPTIONS=pgoptions, **env)
        run_script(PRIMARY_SETUP, timeout=20, PGOPTIONS=pgoptions, **env)
        with psycopg.connect(server.url(), autocommit=True) as conn:
            assert conn.execute("SHOW synchronous_standby_names").fetchone() == (
                "FIRST 1 (replica1, replica2)",
            )
            roles = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'replicator'")
            assert roles.fetchone() == (1,)
    finally:
        server.stop()


@contextlib.contextmanager
def server_settings(server: EmbeddedPostgres, **settings: str):
    """Settings in the test server's postgresql.conf (its superuser cannot log in over
    TCP any more, and it has no socket), applied by a reload, removed afterwards."""
    conf = server.data_dir / "postgresql.conf"
    original = conf.read_text()
    lines = "".join(f"{name} = '{value}'\n" for name, value in settings.items())
    conf.write_text(original + lines)
    server._run("pg_ctl", "reload", "-D", str(server.data_dir))
    try:
        yield
    finally:
        conf.write_text(original)
        server._run("pg_ctl", "reload", "-D", str(server.data_dir))


def sync_state(primary: EmbeddedPostgres, workdir: Path) -> list[tuple]:
    with connect(primary.port, "apm_monitor", workdir) as monitor:
        return monitor.execute(
            "SELECT application_name, sync_state FROM pg_stat_replication"
        ).fetchall()


def test_synchronous_mode_acknowledges_after_the_standby_and_waits_without_one(primary, workdir):
    """The shipped synchronous mode (DB_SYNCHRONOUS_STANDBY_NAMES): a commit returns once
    replica1 has it; with no standby connected a commit waits (writes stop) until one is
    back or it is cancelled, and then it is committed on the primary only."""
    port = free_port()
    with connect(primary.port, "apm_writer", workdir) as writer:
        writer.execute("CREATE TABLE IF NOT EXISTS sync_writes (id int)")
    with server_settings(primary, synchronous_standby_names="FIRST 1 (replica1, replica2)"):
        with replica_process(workdir, primary, port):
            wait_for(lambda: sync_state(primary, workdir) == [("replica1", "sync")],
                     what="replica1 as the synchronous standby")  # fmt: skip
            with connect(primary.port, "apm_writer", workdir) as writer:
                writer.execute("INSERT INTO sync_writes VALUES (1)")
        assert sync_state(primary, workdir) == []

        with connect(primary.port, "apm_writer", workdir) as writer:
            pid = writer.info.backend_pid
            waiting = threading.Thread(
                target=writer.execute, args=("INSERT INTO sync_writes VALUES (2)",)
            )
            waiting.start()
            waiting.join(3)
            assert waiting.is_alive(), "a commit without a synchronous standby must wait"
            with connect(primary.port, "apm_writer", workdir) as other:
                event = other.execute(
                    "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", [pid]
                ).fetchone()
                assert event == ("SyncRep",)
                other.execute("SELECT pg_cancel_backend(%s)", [pid])
            waiting.join(10)
            assert not waiting.is_alive()
            # Cancelled, the wait ends, but the transaction had committed on the primary.
            assert writer.execute("SELECT count(*) FROM sync_writes WHERE id = 2").fetchone() == (
                1,
            )

        # The API's statement timeout (APM_API_STATEMENT_TIMEOUT_MS) does not end the
        # wait (PostgreSQL disarms it before the commit), so it never turns a commit that
        # no standby has into an acknowledgement; only a cancel does, as above.
        with connect(primary.port, "apm_writer", workdir) as writer:
            pid = writer.info.backend_pid
            writer.execute("SET statement_timeout = '1s'")
            bounded = threading.Thread(
                target=writer.execute, args=("INSERT INTO sync_writes VALUES (4)",)
            )
            bounded.start()
            bounded.join(4)
            still_waiting = bounded.is_alive()
            with connect(primary.port, "apm_writer", workdir) as other:
                other.execute("SELECT pg_cancel_backend(%s)", [pid])
            bounded.join(10)
            assert still_waiting, "the statement timeout must not end a synchronous commit"

        # The way out without a restart: synchronous_commit = local (a reload).
        with server_settings(primary, synchronous_commit="local"):
            with connect(primary.port, "apm_writer", workdir) as writer:
                local = threading.Thread(
                    target=writer.execute, args=("INSERT INTO sync_writes VALUES (3)",)
                )
                local.start()
                local.join(20)  # a bound on "does not wait for a standby", not a timing
                assert not local.is_alive(), "synchronous_commit = local must not wait"
