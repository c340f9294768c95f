"""Prometheus (Debian's) with the shipped scrape config and alert rules, scraping the app.

The config is docker/monitoring/prometheus.yml as the container mounts it, with two
changes for a test: a 1-second scrape and evaluation interval, and the apm-web target
pointing at a live server instead of `web:8000` (the exporters' target files are left
empty: they run only in the stacks). Prometheus must load the config and the rules, find
the app up, and evaluate every rule without error.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from apm_platform.processes import free_port
from apm_platform.tests.system_processes import self_signed_certificate

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="needs prometheus (apt-get install prometheus)"),
    pytest.mark.django_db(transaction=True),
]


def prometheus_dir(base: Path, app_address: str) -> Path:
    """/etc/prometheus as the single-host stack mounts it, for a fast test."""
    base.mkdir()
    config = yaml.safe_load((ROOT / "docker/monitoring/prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (base / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "docker/monitoring/alerts.yml", base / "alerts.yml")
    (base / "targets").mkdir()
    (base / "targets/apm-web.yml").write_text(
        yaml.safe_dump([{"targets": [app_address], "labels": {"node": "app"}}])
    )
    (base / "targets/postgres.yml").write_text("[]\n")
    (base / "targets/node.yml").write_text("[]\n")
    # Loaded even for plain-HTTP targets, so it must be a certificate.
    certificate, _ = self_signed_certificate(base / "certs", "apm-app")
    certificate.rename(base / "certs/ca.crt")
    return base


def wait_for(check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_prometheus_scrapes_the_app_and_evaluates_every_rule(live_server, tmp_path):
    app_address = live_server.url.removeprefix("http://")
    config_dir = prometheus_dir(tmp_path / "etc", app_address)
    port = free_port()
    server = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config_dir / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1"
    try:

        def app_target():
            try:
                targets = httpx.get(f"{api}/targets", timeout=2).json()["data"]["activeTargets"]
            except (httpx.HTTPError, ValueError):  # not up yet: no answer, or not its JSON
                assert server.poll() is None, server.stderr.read()
                return None
            return next(
                (t for t in targets if t["labels"]["job"] == "apm-web" and t["health"] == "up"),
                None,
            )

        wait_for(app_target)

        def rules_evaluated():
            groups = httpx.get(f"{api}/rules", timeout=2).json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return (
                rules
                if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules)
                else None
            )

        rules = wait_for(rules_evaluated)
        shipped = sum(
            len(g["rules"])
            for g in yaml.safe_load((ROOT / "docker/monitoring/alerts.yml").read_text())["groups"]
        )
        assert len(rules) == shipped
        assert [rule["name"] for rule in rules if rule["health"] != "ok"] == []

        # A request to the app shows up in Prometheus with its view label.
        httpx.get(f"{live_server.url}/readyz", timeout=5)

        def counted_request():
            query = {"query": 'apm_http_requests_total{view="readyz"}'}
            return httpx.get(f"{api}/query", params=query, timeout=2).json()["data"]["result"]

        wait_for(counted_request)
    finally:
        server.terminate()
        server.wait(timeout=30)
