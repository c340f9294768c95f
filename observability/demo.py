"""The demo project of `make run`, and its credentials saved under .data/ for the user."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.contrib.auth import get_user_model

from observability.models import ApiKey, Membership, Project, Role

DEMO_USER = "demo"


def saved_key(project: Project, name: str, saved_at: Path) -> str:
    """The key saved in the file `saved_at` if it still works for `project`, else a new
    key with every scope, saved there (mode 0600). Returns the plaintext."""
    if saved_at.exists():
        plaintext = saved_at.read_text().strip()
        key = ApiKey.objects.authenticate(plaintext)
        if key is not None and key.project_id == project.pk:
            return plaintext
    _, plaintext = ApiKey.objects.issue(project, name, list(ApiKey.SCOPES))
    _write_private(saved_at, plaintext + "\n")
    return plaintext


def saved_login(project: Project, saved_at: Path) -> tuple[str, str]:
    """The demo user (an admin of `project`) and its password: the one saved in the file
    `saved_at` ("username password") if it still signs in, else a new random password,
    saved there (mode 0600)."""
    users = get_user_model()
    user, _ = users.objects.get_or_create(username=DEMO_USER)
    Membership.objects.update_or_create(user=user, project=project, defaults={"role": Role.ADMIN})
    if saved_at.exists():
        username, _, password = saved_at.read_text().strip().partition(" ")
        if username == DEMO_USER and password and user.check_password(password):
            return username, password
    password = secrets.token_urlsafe(12)
    user.set_password(password)
    user.save(update_fields=["password"])
    _write_private(saved_at, f"{DEMO_USER} {password}\n")
    return DEMO_USER, password


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)
