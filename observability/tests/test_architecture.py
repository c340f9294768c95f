"""Where things live, checked: DRF only in observability/api/, a domain that does not
know the API, a UI that calls the domain (not the API), migrations that do not run live
code (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from apm_platform.processes import BASE_DIR

DRF_PACKAGES = {"rest_framework", "drf_spectacular", "django_filters"}
APP_PACKAGES = ("apm_platform", "observability")


def app_modules():
    """Every module of the app itself (tests excluded)."""
    for package in APP_PACKAGES:
        for path in sorted((BASE_DIR / package).rglob("*.py")):
            if "tests" not in path.relative_to(BASE_DIR).parts:
                yield path


def imported(path: Path) -> set[str]:
    """The modules `path` imports, by their full dotted names."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def under(path: Path, folder: str) -> bool:
    return path.is_relative_to(BASE_DIR / folder)


def test_only_the_api_package_knows_django_rest_framework():
    offenders = {
        str(path.relative_to(BASE_DIR)): sorted(
            name for name in imported(path) if name.split(".")[0] in DRF_PACKAGES
        )
        for path in app_modules()
        if not under(path, "observability/api")
    }
    assert {module: names for module, names in offenders.items() if names} == {}


@pytest.mark.parametrize(
    "domain",
    [
        "observability/analytics",
        "observability/ingest",
        "observability/error_groups",
        "observability/anomalies",
    ],
)
def test_the_domain_does_not_import_the_api(domain):
    offenders = {
        str(path.relative_to(BASE_DIR)): sorted(
            name for name in imported(path) if name.startswith("observability.api")
        )
        for path in app_modules()
        if under(path, domain)
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_ui_calls_the_domain_not_the_api_nor_drf():
    """The UI reads the analytics, request and search domains directly; DRF (and
    django-filter) stay in the API package."""
    modules = [path for path in app_modules() if under(path, "observability/ui")]
    assert modules, "the UI package has no modules?"
    offenders = {
        str(path.relative_to(BASE_DIR)): sorted(
            name
            for name in imported(path)
            if name.startswith("observability.api") or name.split(".")[0] in DRF_PACKAGES
        )
        for path in modules
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_migrations_import_no_live_code_of_the_app():
    """Their SQL is frozen: editing the live code must not change what they run."""
    offenders = {
        str(path.relative_to(BASE_DIR)): sorted(
            name
            for name in imported(path)
            if name.split(".")[0] in APP_PACKAGES
            and not name.startswith("observability.migrations")
        )
        for path in sorted((BASE_DIR / "observability" / "migrations").glob("*.py"))
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_checks_above_see_imports():
    """A guard for the guards: the parser finds the imports it must."""
    assert "rest_framework.views.APIView" in imported(BASE_DIR / "observability/api/ingest.py")
    assert "observability.analytics.queries" in imported(
        BASE_DIR / "observability/api/analytics.py"
    )
    assert "observability.analytics.queries.KpiQuery" in imported(
        BASE_DIR / "observability/ui/pages.py"
    )
