"""The demo project of `make run`, and its credentials saved under .data/ for the user."""

from __future__ import annotations

from pathlib import Path

from observability.models import ApiKey, Project


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


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)
