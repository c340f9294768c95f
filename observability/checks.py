"""System checks: which analytics backend runs, and whether the database agrees.

Run with `python manage.py check --database default` (migrate runs them too).
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Info, Tags, Warning, register
from django.db import DatabaseError, connections

from observability.analytics import backend, sketches


@register(Tags.database)
def analytics_backend_check(app_configs, databases=None, **kwargs):
    if not databases or "default" not in databases:
        return []
    connection = connections["default"]
    try:
        built = backend.installed(connection)
        choice = backend.choose(connection)
    except DatabaseError as exc:
        return [Error(f"cannot inspect the database: {exc}", id="observability.E001")]
    if built is None:
        if choice.name is None:
            return [Error(f"no usable analytics backend: {choice.reason}", id="observability.E002")]
        return [
            Info(
                f"analytics backend to be created by migrations: {choice.name} ({choice.reason})",
                id="observability.I001",
            )
        ]
    configured = settings.APM_ANALYTICS_BACKEND
    if configured != "auto" and configured != built.name:
        return [
            Error(
                f"APM_ANALYTICS_BACKEND={configured} but api_request was built for {built.name}",
                hint="Set APM_ANALYTICS_BACKEND=auto, or to the backend the schema was built for.",
                id="observability.E003",
            )
        ]
    return [
        Info(
            f"analytics backend: {built.name} (schema built for it; {choice.reason})",
            id="observability.I002",
        )
    ]


@register(Tags.database)
def pgvector_check(app_configs, databases=None, **kwargs):
    """Without pgvector: percentiles work (slower), semantic search does not."""
    if not databases or "default" not in databases:
        return []
    try:
        store = sketches.of(connections["default"])
    except (DatabaseError, RuntimeError):
        return []  # not migrated yet, or no database: the backend check reports it
    if store.has_pgvector:
        return []
    return [
        Warning(
            "the database has no pgvector extension (vector): semantic search is off "
            "(keyword search works) and latency sketches are stored as arrays, merged in "
            "PL/pgSQL (slower KPI queries over long windows)",
            hint="Install pgvector on the server to enable semantic search; existing "
            "rollups keep their array sketches.",
            id="observability.W001",
        )
    ]
