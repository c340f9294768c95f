"""Helpers of the tests that run the deployment's scripts with real local processes:
Debian's PostgreSQL 15 (built with TLS, unlike the embedded one), run as the database's
own user as in its container, and throw-away certificates."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from apm_platform import embedded_db

ROOT = Path(__file__).resolve().parents[2]
# apt-get install postgresql-15 (done by .ci/run).
PG_BIN = Path("/usr/lib/postgresql/15/bin")
requires_system_postgres = pytest.mark.skipif(
    not (PG_BIN / "postgres").exists(), reason=f"needs PostgreSQL with TLS in {PG_BIN}"
)


def server_user_identity() -> dict:
    """subprocess arguments to run as the database's user (root runs it as another)."""
    user = embedded_db._server_user()
    return {"user": user, "group": user, "extra_groups": []} if user else {}


def give_to_server_user(*paths: Path) -> None:
    user = embedded_db._server_user()
    if user:
        entry = pwd.getpwnam(user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)


def self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """public.crt (its own CA) and private.key for `name`, the key owned by the server user."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    certificate, key = directory / "public.crt", directory / "private.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(certificate),
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    certificate.chmod(0o644)
    give_to_server_user(key)
    return certificate, key
