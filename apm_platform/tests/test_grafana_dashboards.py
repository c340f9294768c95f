"""Grafana dashboards: they parse, use provisioned data sources, and every SQL query runs.

SQL panel queries are run against the test database (with rollups refreshed) after
expanding Grafana's macros and template variables the way Grafana's PostgreSQL data
source does, so a renamed column or table breaks this test, not a dashboard in
production.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.db import connection

from observability.tests.analytics_data import generate
from observability.tests.utils import make_project

PROVISIONING = Path(__file__).resolve().parents[2] / "docker/monitoring/grafana/provisioning"
DASHBOARDS = sorted((PROVISIONING / "dashboards").glob("*.json"))
START, END = datetime.now(UTC) - timedelta(days=2), datetime.now(UTC)


def datasource_uids() -> dict[str, str]:
    config = yaml.safe_load((PROVISIONING / "datasources/datasources.yml").read_text())
    return {source["uid"]: source["type"] for source in config["datasources"]}


def targets(dashboard: dict):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def expand(sql: str, variables: dict[str, list[str]]) -> str:
    """Grafana's PostgreSQL macros and template variables, expanded as Grafana does."""

    def seconds(interval: str) -> int:
        value, unit = int(interval[:-1]), interval[-1]
        return value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]

    start, end = f"'{START.isoformat()}'", f"'{END.isoformat()}'"
    sql = re.sub(r"\$__timeGroupAlias\((\w+),\s*'?(\w+)'?\)",
                 lambda m: f'to_timestamp(floor(extract(epoch from {m[1]}) / {seconds(m[2])}) '
                           f'* {seconds(m[2])}) AS "time"', sql)  # fmt: skip
    sql = re.sub(r"\$__timeGroup\((\w+),\s*'?(\w+)'?\)",
                 lambda m: f"to_timestamp(floor(extract(epoch from {m[1]}) / {seconds(m[2])}) "
                           f"* {seconds(m[2])})", sql)  # fmt: skip
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN {start} AND {end}", sql)
    sql = sql.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    for name, values in variables.items():
        quoted = ",".join("'" + value.replace("'", "''") + "'" for value in values)
        sql = sql.replace(f"${{{name}}}", quoted).replace(f"${name}", quoted)
    if "$" in sql.replace("$$", ""):
        raise AssertionError(f"unexpanded macro or variable in: {sql}")
    return sql


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboards_parse_and_use_provisioned_data_sources(path):
    dashboard = json.loads(path.read_text())
    uids = datasource_uids()

    assert dashboard["uid"] == path.stem
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["datasource"]["type"] == uids[panel["datasource"]["uid"]]
    for _, target in targets(dashboard):
        assert target["datasource"]["uid"] in uids
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] in uids


@pytest.mark.django_db(transaction=True)
def test_every_sql_panel_query_runs_on_the_rollups():
    project = make_project(f"grafana-{uuid.uuid4().hex[:8]}")
    generate(project, START - timedelta(hours=1), END - timedelta(hours=3), 2000, seed=5)
    call_command("refresh_apirequest_hourly", verbosity=0)
    call_command("refresh_apirequest_daily", verbosity=0)
    ran = 0
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        variables = {}
        with connection.cursor() as cursor:
            for variable in dashboard["templating"]["list"]:
                if variable["datasource"]["uid"] == "apm-postgres":
                    cursor.execute(variable["query"])
                    variables[variable["name"]] = [row[0] for row in cursor.fetchall()]
                    assert variables[variable["name"]], f"{variable['name']} has no values"
            for panel, target in targets(dashboard):
                if "rawSql" not in target:
                    continue
                cursor.execute(expand(target["rawSql"], variables))
                rows = cursor.fetchall()
                assert rows, f"{path.stem}: '{panel['title']}' returned no rows"
                ran += 1
    assert ran >= 4
