"""`manage.py export_slo_rules`: Prometheus rules that promtool accepts and that fire on
the burn rates /metrics exports (promtool's rule unit tests). `make validate` runs this
file; without promtool the promtool tests are skipped (Debian: prometheus)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from apm_platform.processes import free_port
from observability.alerting import slos
from observability.alerting.models import Slo
from observability.tests.utils import database_unreachable, make_project

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


@pytest.fixture
def exported(project, tmp_path):
    Slo.objects.create(project=project, name="pay {fast}", service="checkout",
                       objective="latency", latency_threshold_ms=300, target=99.5)  # fmt: skip
    Slo.objects.create(project=make_project("globex"), name="up", service="api",
                       objective="availability", target=99.9, window_days=28)  # fmt: skip
    path = tmp_path / "slo-rules.yml"
    call_command("export_slo_rules", "--output", str(path), stderr=StringIO())
    return path


@pytest.mark.django_db
def test_one_group_per_project_two_alerts_per_slo(exported):
    groups = yaml.safe_load(exported.read_text())["groups"]
    assert [group["name"] for group in groups] == ["apm-slo-acme", "apm-slo-globex"]
    acme = groups[0]["rules"]
    assert [(r["alert"], r["labels"]["severity"]) for r in acme] == [
        ("ApmSloBurnRatePage", "page"), ("ApmSloBurnRateTicket", "ticket"),
    ]  # fmt: skip
    assert 'window="1h"} > 14.4' in acme[0]["expr"] and 'window="3d"} > 1' in acme[1]["expr"]
    assert "{" not in acme[0]["annotations"]["summary"]  # no template syntax from a name


@pytest.mark.django_db
def test_one_project_only_and_an_unknown_one(project):
    out = StringIO()
    call_command("export_slo_rules", "--project", "acme", stdout=out)
    assert yaml.safe_load(out.getvalue()) == {"groups": []}
    with pytest.raises(CommandError, match="no project"):
        call_command("export_slo_rules", "--project", "nope")


@needs_promtool
@pytest.mark.django_db
def test_promtool_accepts_the_rules(exported):
    result = subprocess.run([PROMTOOL, "check", "rules", str(exported)], capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 rules found" in result.stdout


@needs_promtool
@pytest.mark.django_db
def test_the_rules_fire_on_the_exported_burn_rates(exported, project, tmp_path):
    slo_id = Slo.objects.get(project=project).pk

    def series(window, values):
        labels = f'project="acme", slo_id="{slo_id}", window="{window}"'
        return {"series": f"apm_slo_burn_rate{{{labels}}}", "values": values}

    # 20x over 1 h, and over 5 m for 3 minutes only; never 6x over 6 h.
    tests = {
        "rule_files": [exported.name],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                series("1h", "20x10"), series("5m", "20 20 20 0x7"), series("6h", "2x10"),
                series("30m", "20x10"), series("1d", "1x10"), series("2h", "1x10"),
                series("3d", "1x10"),
            ],
            "alert_rule_test": [
                {"eval_time": "2m", "alertname": "ApmSloBurnRatePage", "exp_alerts": [{
                    "exp_labels": {"severity": "page", "project": "acme",
                                   "slo_id": str(slo_id), "service": "checkout"},
                    "exp_annotations": _annotations(exported, 0),
                }]},
                {"eval_time": "5m", "alertname": "ApmSloBurnRatePage", "exp_alerts": []},
                {"eval_time": "5m", "alertname": "ApmSloBurnRateTicket", "exp_alerts": []},
            ],
        }],
    }  # fmt: skip
    test_file = tmp_path / "slo-rules.test.yml"
    test_file.write_text(yaml.safe_dump(tests))
    result = subprocess.run([PROMTOOL, "test", "rules", test_file.name], cwd=tmp_path,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def _annotations(path, index: int) -> dict:
    return yaml.safe_load(path.read_text())["groups"][0]["rules"][index]["annotations"]


@pytest.mark.django_db
def test_metrics_export_the_burn_rates_the_rules_read(project, client):
    slo = Slo.objects.create(project=project, name="up", service="checkout",
                             objective="availability", target=99.9)  # fmt: skip
    slos.run_alerts(project.pk, datetime.now(UTC) - timedelta(minutes=1))
    metrics = client.get("/metrics").content.decode()
    # Labels in alphabetical order, as prometheus_client writes them.
    labels = (
        f'objective="availability",project="acme",service="checkout",slo="up",slo_id="{slo.pk}"'
    )
    assert f'apm_slo_burn_rate{{{labels},window="1h"}} 0.0' in metrics
    assert f"apm_slo_error_budget_remaining{{{labels}}} 1.0" in metrics
    assert f"apm_slo_target{{{labels}}} 0.999" in metrics


def test_metrics_answer_without_the_database(client, django_db_blocker):
    """A scrape during a database outage keeps the process series; the SLO ones wait."""
    with database_unreachable(django_db_blocker, free_port()):
        response = client.get("/metrics")
    body = response.content.decode()
    assert response.status_code == 200
    assert "apm_http_requests_total" in body and "apm_slo_" not in body
