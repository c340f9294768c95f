"""Real processes of this project for the tests and benchmarks: scratch PostgreSQL
instances (migrated), gunicorn with the project's config, manage.py commands.

Neither test nor benchmark code: both import it, and so may scripts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from apm_platform import gunicorn_conf
from apm_platform.embedded_db import EmbeddedPostgres

BASE_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(database_url: str, *args: str, code_dir: Path = BASE_DIR) -> str:
    """Run a manage.py command against `database_url`; returns its stdout. `code_dir`:
    another checkout of the project (a benchmark comparing two versions)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=code_dir,
        env=app_env(database_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "apm_platform.ci_settings",
        "DATABASE_URL": database_url,
        # Scratch servers are plain embedded PostgreSQL, whatever the suite runs against.
        "APM_ANALYTICS_BACKEND": "auto",
        **extra,
    }


@contextlib.contextmanager
def scratch_postgres(directory: Path, code_dir: Path = BASE_DIR) -> Iterator[EmbeddedPostgres]:
    """A new PostgreSQL instance (its own data directory and port), migrated by the
    code in `code_dir`."""
    server = EmbeddedPostgres(data_dir=directory / "pg", port=free_port())
    server.start()
    try:
        manage(server.url(), "migrate", "--verbosity", "0", code_dir=code_dir)
        yield server
    finally:
        server.stop()


class Gunicorn:
    """gunicorn serving the app with the project's config, on a free loopback port
    (the code of `code_dir`: this checkout unless a benchmark compares two versions)."""

    def __init__(
        self, database_url: str, metrics_dir: Path, workers: int = 2, code_dir: Path = BASE_DIR,
        **env: str,
    ):  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        # A file, not a pipe: nobody reads a pipe while the server runs, and workers
        # block once its 64 KiB buffer is full of log lines.
        self.log_path = metrics_dir.parent / f"gunicorn-{self.port}.log"
        self.log = open(self.log_path, "w+")  # closed in stop()
        self.process = subprocess.Popen(
            gunicorn_conf.command(f"127.0.0.1:{self.port}", workers),
            cwd=code_dir,
            env=app_env(database_url, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), **env),
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            text=True,
        )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError("gunicorn did not become healthy")

    def worker_pids(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def stop(self) -> str:
        """Stop gracefully; returns what the server logged."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.log.close()
        return self.log_path.read_text()
