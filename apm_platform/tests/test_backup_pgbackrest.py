"""Backups for real: pgBackRest (Debian's), an S3 server over TLS, PostgreSQL 15.

The single host's pgBackRest configuration (docker/backup/pgbackrest-client.conf: two
encrypted S3 repositories) runs with only its container paths and MinIO's address
rewritten; the container's scripts run as they are: pgbackrest-secrets (secrets from
files), db-init.sh (stanza, check), pgbackrest-cron.sh (first full backups, metrics),
and the restore of drill 01 (delete the data directory, `pgbackrest restore`, start).

The S3 server is moto's behind Nginx TLS (MinIO cannot be installed here), so MinIO and
docker/minio/init.sh (buckets, versioning, the restricted user) are not exercised: the
buckets are made with boto3. Whatever pgBackRest asks of S3 (signed requests, multipart
uploads, listings) is served for real, over verified TLS.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

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

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = [
    pytest.mark.slow,
    requires_system_postgres,
    pytest.mark.skipif(not Path(NGINX).exists(), reason="needs nginx (apt-get install nginx)"),
    pytest.mark.skipif(
        shutil.which("pgbackrest") is None, reason="needs pgbackrest (apt-get install pgbackrest)"
    ),
]
boto3 = pytest.importorskip("boto3")

WRAPPER = ROOT / "docker/pgbackrest/pgbackrest-secrets.sh"
BUCKETS = ("apm-backups-hot", "apm-backups-cold")
CIPHER_PASS = "a-passphrase-from-a-docker-secret"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = tmp_path_factory.mktemp("backup")
    base.chmod(0o755)
    for name in ("log", "lock", "spool", "sock", "metrics", "secrets", "bin"):
        (base / name).mkdir(mode=0o755)
    give_to_server_user(*(base / name for name in ("log", "lock", "spool", "sock", "metrics")))
    (base / "secrets/pgbackrest_s3_secret").write_text("s3-secret-key\n")
    (base / "secrets/pgbackrest_cipher_pass").write_text(CIPHER_PASS + "\n")
    for secret in (base / "secrets").iterdir():
        secret.chmod(0o644)
    # The images install the wrapper as `pgbackrest-secrets` on the PATH.
    (base / "bin/pgbackrest-secrets").symlink_to(WRAPPER)
    return base


NGINX_TLS_PROXY = """
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{}}
http {{
    access_log off;
    client_max_body_size 0;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_set_header Host $http_host;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


@contextlib.contextmanager
def process(command: list[str], **kwargs):
    running = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs
    )
    try:
        yield running
    finally:
        running.terminate()
        running.wait(timeout=10)


@pytest.fixture(scope="module")
def s3(workdir):
    """moto's S3 server on the loopback behind Nginx TLS (a certificate for localhost),
    as MinIO serves TLS itself; the two buckets made with boto3. (moto's own TLS ends
    connections without close_notify, which pgBackRest rightly rejects.)"""
    certificate, key = self_signed_certificate(workdir / "s3-tls", "localhost")
    backend, port = free_port(), free_port()
    prefix = workdir / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(
        NGINX_TLS_PROXY.format(
            prefix=prefix, port=port, backend=backend, certificate=certificate, key=key
        )
    )
    moto_server = str(Path(sys.executable).parent / "moto_server")
    with (
        process([moto_server, "-H", "127.0.0.1", "-p", str(backend)]),
        process([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]) as proxy,
    ):
        client = boto3.client(
            "s3",
            endpoint_url=f"https://localhost:{port}",
            aws_access_key_id="pgbackrest",
            aws_secret_access_key="s3-secret-key",
            region_name="us-east-1",
            verify=str(certificate),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                for bucket in BUCKETS:
                    client.create_bucket(Bucket=bucket)
                break
            except Exception:
                if time.monotonic() > deadline or proxy.poll() is not None:
                    raise
                time.sleep(0.3)
        yield {"port": port, "ca": certificate, "client": client}


@pytest.fixture(scope="module")
def pg_port():
    return free_port()


@pytest.fixture(scope="module")
def config(workdir, s3, pg_port):
    """docker/backup/pgbackrest-client.conf with its container paths made local."""
    text = (ROOT / "docker/backup/pgbackrest-client.conf").read_text()
    replacements = {
        "cmd=/usr/local/bin/pgbackrest-secrets": f"cmd={WRAPPER}",
        "s3-endpoint=minio": "s3-endpoint=localhost",
        "storage-port=9000": f"storage-port={s3['port']}",
        "/etc/pgbackrest/certs/minio.crt": str(s3["ca"]),
        "/home/postgres/pgdata/data": str(workdir / "pgdata"),
        "/var/run/postgresql": str(workdir / "sock"),
        "/var/spool/pgbackrest": str(workdir / "spool"),
    }
    for container_value, local_value in replacements.items():
        assert container_value in text, f"pgbackrest-client.conf no longer has {container_value}"
        text = text.replace(container_value, local_value)
    # The images' default log and lock directories.
    text = text.replace(
        "[global]\n", f"[global]\nlog-path={workdir}/log\nlock-path={workdir}/lock\n", 1
    )
    text += f"pg1-port={pg_port}\n"  # the containers' server listens on the default 5432
    path = workdir / "pgbackrest.conf"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def environment(workdir, config):
    """What the containers' environment provides: the config at its default path, the
    secrets under /run/secrets, the wrapper on the PATH."""
    return {
        "PGBACKREST_CONFIG": str(config),
        "SECRETS_DIR": str(workdir / "secrets"),
        "PATH": f"{workdir / 'bin'}:{PG_BIN}:/usr/bin:/bin",
        "HOME": str(workdir),
        # In the image the OS user is `postgres`, the database's superuser; here it is not.
        "PGUSER": "postgres",
    }


@pytest.fixture(scope="module")
def database(workdir, environment, pg_port):
    """PostgreSQL archiving its WAL through the wrapper, as the backup overlay sets it up."""
    server = EmbeddedPostgres(
        data_dir=workdir / "pgdata",
        port=pg_port,
        bin_dir=PG_BIN,
        settings=(
            f"unix_socket_directories={workdir / 'sock'}",
            "archive_mode=on",
            f"archive_command={WRAPPER} --stanza=apm archive-push %p",
        ),
    )
    # The server (and so archive_command and restore_command) inherits this environment.
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        server.start()
        yield server
        server.stop()


def run(command: list[str], environment: dict, timeout: float = 300) -> str:
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=timeout, check=False,
        **server_user_identity(),
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def rows_after_recovery(server: EmbeddedPostgres, timeout: float = 120) -> list[int]:
    """The table once recovery has ended: a restored server accepts read-only connections
    while it still replays the archived WAL."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(server.url(), autocommit=True) as conn:
        while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            assert time.monotonic() < deadline, "the restored server is still in recovery"
            time.sleep(0.2)
        return [row[0] for row in conn.execute("SELECT id FROM backed_up ORDER BY id")]


@contextlib.contextmanager
def backup_schedule(environment: dict, metrics: Path):
    """pgbackrest-cron.sh as the backup container runs it, stopped on exit."""
    process = subprocess.Popen(
        ["bash", str(ROOT / "docker/backup/pgbackrest-cron.sh")],
        env={**environment, "BACKUP_METRICS_DIR": str(metrics)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        **server_user_identity(),
    )  # fmt: skip
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def wait_for_metrics(process, metrics: Path, timeout: float = 300) -> dict[str, str]:
    files = [metrics / "apm_backup_repo1.prom", metrics / "apm_backup_repo2.prom"]
    deadline = time.monotonic() + timeout
    while not all(f.exists() for f in files):
        assert process.poll() is None, f"pgbackrest-cron.sh exited:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "no backup metrics after the first backups"
        time.sleep(0.5)
    return {f.name: f.read_text() for f in files}


def test_archive_back_up_to_both_repositories_and_restore(workdir, environment, database, s3):
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE backed_up (id int PRIMARY KEY)")
        conn.execute("INSERT INTO backed_up SELECT generate_series(1, 1000)")

    # db-init.sh: stanza-create, then check (a WAL switch that must reach the repository).
    output = run(["bash", str(ROOT / "docker/backup/db-init.sh")], environment)
    assert "stanza apm created and checked" in output

    # The schedule's start: a first full backup in each repository, and its metrics.
    started = time.time()
    with backup_schedule(environment, workdir / "metrics") as schedule:
        metrics = wait_for_metrics(schedule, workdir / "metrics")
    for repo in ("1", "2"):
        text = metrics[f"apm_backup_repo{repo}.prom"]
        assert f'apm_backup_last_status{{stanza="apm",repo="{repo}"}} 1' in text
        success = re.search(r"apm_backup_last_success_timestamp_seconds\{[^}]*\} (\d+)", text)
        assert success and int(success[1]) >= int(started)
    if shutil.which("promtool"):
        for path in (workdir / "metrics").glob("*.prom"):
            subprocess.run(["promtool", "check", "metrics"], input=path.read_bytes(), check=True)

    info = run(
        [str(workdir / "bin/pgbackrest-secrets"), "--stanza=apm", "--output=json", "info"],
        environment,
    )
    assert info.count('"type":"full"') == 2, info

    # Written after the backups: recovered from the archived WAL, not from a backup.
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("INSERT INTO backed_up SELECT generate_series(1001, 1500)")
    run([str(workdir / "bin/pgbackrest-secrets"), "--stanza=apm", "check"], environment)

    # The repositories are encrypted: the backup manifest is not readable in the bucket.
    client = s3["client"]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="apm-backups-hot")
    keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    info_key = next((key for key in keys if key.endswith("backup/apm/backup.info")), None)
    assert info_key, keys[:20]
    assert (
        b"[backup:current]"
        not in client.get_object(Bucket="apm-backups-hot", Key=info_key)["Body"].read()
    )

    # Drill 01: lose the data directory, restore the latest state from the hot repository.
    database.stop()
    shutil.rmtree(database.data_dir)
    database.data_dir.mkdir(mode=0o700)
    give_to_server_user(database.data_dir)
    run([str(workdir / "bin/pgbackrest-secrets"), "--stanza=apm", "restore"], environment)
    auto_conf = (database.data_dir / "postgresql.auto.conf").read_text()
    assert f"restore_command = '{WRAPPER} --stanza=apm archive-get %f \"%p\"'" in auto_conf
    database.start()
    assert rows_after_recovery(database) == list(range(1, 1501))

    # Repository 2 alone (as if the hot bucket were lost): its full backup restores.
    target = workdir / "pgdata-from-cold"
    target.mkdir(mode=0o700)
    give_to_server_user(target)
    pgbackrest = str(workdir / "bin/pgbackrest-secrets")
    run(
        [pgbackrest, "--stanza=apm", "--repo=2", f"--pg1-path={target}",
         "--type=immediate", "--target-action=promote", "restore"],
        environment,
    )  # fmt: skip
    cold = EmbeddedPostgres(
        data_dir=target, port=free_port(), bin_dir=PG_BIN, settings=("archive_mode=off",)
    )
    with cold.running():
        # The full backups were taken after the first 1000 rows, before the next 500.
        assert rows_after_recovery(cold) == list(range(1, 1001))
