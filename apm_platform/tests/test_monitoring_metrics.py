"""The alert rules and Prometheus dashboard panels query metrics that exist.

Every `apm_*` series they name must be exported by the app's /metrics (with the labels
they match on) or written by the backup schedule (docker/backup/pgbackrest-cron.sh,
whose output the backup test checks with promtool). A renamed metric or label would
otherwise leave an alert that can never fire.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from observability.tests.utils import client_with, event_payload, make_key, make_project

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "docker/monitoring"
BACKUP_SCHEDULE = (ROOT / "docker/backup/pgbackrest-cron.sh").read_text()
# A series selector: name, then optional {label matchers}.
SELECTOR = re.compile(r"\b(apm_[a-z_]+)(?:\{([^}]*)\})?")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def promql_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for dashboard in (MONITORING / "grafana/provisioning/dashboards").glob("*.json"):
        expressions += [
            target["expr"]
            for panel in _panels(json.loads(dashboard.read_text()))
            for target in panel.get("targets", [])
            if "expr" in target
        ]
    return expressions


def _panels(container: dict):
    for panel in container.get("panels", []):
        yield panel
        yield from _panels(panel)


def exported_families() -> dict[str, set[str]]:
    """Metric family -> label names, from the app's /metrics after some traffic."""
    key = make_key(make_project("metrics"))
    client = client_with(key)
    client.post("/api/v1/ingest/", [event_payload()], format="json")
    client.get("/api/v1/kpis/")
    families = {}
    for family in text_string_to_metric_families(client.get("/metrics").content.decode()):
        labels = set().union(*(sample.labels.keys() for sample in family.samples))
        families[family.name] = labels - {"le"}
        if family.type == "counter":
            families[family.name + "_total"] = families[family.name]
    return families


@pytest.mark.django_db
def test_every_apm_series_queried_exists_with_its_labels():
    families = exported_families()
    checked = 0
    for expression in promql_expressions():
        for name, matchers in SELECTOR.findall(expression):
            if name.startswith("apm_backup_"):
                assert name in BACKUP_SCHEDULE, f"{name}: not written by pgbackrest-cron.sh"
                continue
            family = name
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name.removesuffix(suffix) in families:
                    family = name.removesuffix(suffix)
            assert family in families, f"{name} (in {expression!r}) is not exported by /metrics"
            used_labels = {
                matcher.split("=")[0].rstrip("!~").strip()
                for matcher in matchers.split(",")
                if matcher
            }
            assert used_labels <= families[family], (
                f"{name}: labels {used_labels - families[family]} unknown"
            )
            checked += 1
    assert checked >= 5  # the app's own series are really being checked
