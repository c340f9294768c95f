"""System checks: which analytics backend runs, and whether the database agrees.

Run with `python manage.py check --database default` (migrate runs them too).
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Info, Tags, register
from django.db import DatabaseError, connections

from observability.analytics import backend


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
