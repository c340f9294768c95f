from __future__ import annotations

from pathlib import Path

from django.apps import AppConfig
from django.core import checks

VENDOR = Path(__file__).resolve().parent / "static" / "ui" / "vendor"
VENDORED_FILES = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")


class UiConfig(AppConfig):
    name = "observability.ui"
    label = "apm_ui"
    verbose_name = "APM UI"

    def ready(self) -> None:
        checks.register(vendored_assets_check)


def vendored_assets_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """The front-end libraries come from npm through scripts/dev/ui_assets.sh."""
    missing = [name for name in VENDORED_FILES if not (VENDOR / name).exists()]
    if not missing:
        return []
    return [
        checks.Warning(
            f"The UI's front-end libraries are missing ({', '.join(missing)}): charts and "
            "partial updates will not work.",
            hint="Run scripts/dev/ui_assets.sh (make run and make test do).",
            id="apm_ui.W001",
        )
    ]
