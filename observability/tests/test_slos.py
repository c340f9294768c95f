"""SLOs: the CRUD API, its scopes and validation, the SLI counts against a reference
computed in Python from the stored rows, and the status endpoint."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from observability.alerting import sli, slos
from observability.alerting.models import Slo
from observability.analytics import sketch
from observability.analytics.rollups import DAY, HOUR, hour_floor
from observability.models import ApiKey
from observability.tests.analytics_data import store
from observability.tests.utils import client_with, make_key, make_project

URL = "/api/v1/slos/"
AVAILABILITY = {"name": "checkout up", "service": "checkout", "objective": "availability",
                "target": 99.9, "window_days": 30}  # fmt: skip


def refresh():
    call_command("refresh_apirequest_hourly", verbosity=0)
    call_command("refresh_apirequest_daily", verbosity=0)


@pytest.fixture
def admin(project):
    return client_with(make_key(project, ApiKey.SCOPES))


# --- CRUD ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_list_change_delete(admin, project):
    created = admin.post(URL, AVAILABILITY, format="json")
    assert created.status_code == 201, created.json()
    slo = created.json()
    assert slo["target"] == 99.9 and slo["endpoints"] == [] and slo["window_days"] == 30
    latency = {**AVAILABILITY, "name": "fast pay", "objective": "latency",
               "latency_threshold_ms": 250, "endpoints": ["/pay"], "window_days": 7}  # fmt: skip
    assert admin.post(URL, latency, format="json").status_code == 201
    listed = admin.get(URL).json()["results"]
    assert [s["name"] for s in listed] == ["checkout up", "fast pay"]
    changed = admin.patch(f"{URL}{slo['id']}/", {"target": 99.5}, format="json")
    assert changed.status_code == 200 and changed.json()["target"] == 99.5
    assert admin.delete(f"{URL}{slo['id']}/").status_code == 204
    assert Slo.objects.filter(project=project).count() == 1


@pytest.mark.django_db
def test_changes_need_the_admin_scope_and_reads_the_read_scope(project):
    writer = client_with(make_key(project, [ApiKey.SCOPE_READ, ApiKey.SCOPE_INGEST]))
    response = writer.post(URL, AVAILABILITY, format="json")
    assert response.status_code == 403 and "admin" in response.json()["detail"]
    ingest_only = client_with(make_key(project, [ApiKey.SCOPE_INGEST]))
    assert ingest_only.get(URL).status_code == 403
    assert client_with(None).get(URL).status_code == 401


@pytest.mark.django_db
def test_slos_of_another_project_are_invisible(admin, project):
    other = make_project("globex")
    theirs = Slo.objects.create(project=other, **AVAILABILITY)
    assert admin.get(URL).json()["results"] == []
    assert admin.get(f"{URL}{theirs.pk}/").status_code == 404
    assert admin.get(f"{URL}{theirs.pk}/status/").status_code == 404
    assert admin.delete(f"{URL}{theirs.pk}/").status_code == 404
    # The same name is free in this project.
    assert admin.post(URL, AVAILABILITY, format="json").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"objective": "latency"}, "latency_threshold_ms"),
        ({"latency_threshold_ms": 100}, "latency_threshold_ms"),
        ({"objective": "speed"}, "objective"),
        ({"target": 100}, "target"),
        ({"target": 12}, "target"),
        ({"target": "high"}, "target"),
        ({"window_days": 14}, "window_days"),
        ({"service": ""}, "service"),
        ({"endpoints": "/pay"}, "endpoints"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_400_naming_them(admin, change, field):
    response = admin.post(URL, {**AVAILABILITY, **change}, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()


@pytest.mark.django_db
def test_a_duplicate_name_is_400(admin):
    assert admin.post(URL, AVAILABILITY, format="json").status_code == 201
    response = admin.post(URL, AVAILABILITY, format="json")
    assert response.status_code == 400 and "name" in response.json()["errors"]


@pytest.mark.django_db
def test_a_patch_keeps_the_objective_consistent(admin):
    slo = admin.post(URL, {**AVAILABILITY, "objective": "latency", "latency_threshold_ms": 100},
                     format="json").json()  # fmt: skip
    response = admin.patch(f"{URL}{slo['id']}/", {"latency_threshold_ms": None}, format="json")
    assert response.status_code == 400 and "latency_threshold_ms" in response.json()["errors"]


# --- SLI counts against a reference --------------------------------------------------------

ENDPOINTS = ["/cart", "/pay", "/orders/1", "/orders/2", "/other"]


def _rows(base: datetime, hours: int, count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        rows.append({
            "time": base + timedelta(seconds=rng.random() * hours * 3600),
            "service": rng.choice(["checkout", "search"]),
            "endpoint": rng.choice(ENDPOINTS),
            "method": "GET",
            "status_code": rng.choice([200, 200, 200, 404, 500, 503]),
            "latency_ms": round(rng.lognormvariate(4.5, 1.0), 3),
            "environment": rng.choice(["production", "staging"]),
        })  # fmt: skip
    return rows


def _reference(slo: Slo, rows: list[dict], start: datetime, end: datetime) -> sli.Counts:
    def selected(row):
        if row["service"] != slo.service or not start <= row["time"] < end:
            return False
        if slo.endpoints and row["endpoint"] not in slo.endpoints:
            return False
        if slo.endpoint_pattern and not row["endpoint"].startswith(slo.endpoint_pattern[:-1]):
            return False  # the test's patterns are prefixes ending in *
        return not slo.environment or row["environment"] == slo.environment

    def good(row):
        if slo.objective == Slo.Objective.AVAILABILITY:
            return row["status_code"] < 500
        return sketch.bucket_of(row["latency_ms"]) <= sketch.bucket_of(slo.latency_threshold_ms)

    chosen = [row for row in rows if selected(row)]
    return sli.Counts(len(chosen), sum(1 for row in chosen if good(row)))


@pytest.mark.django_db(transaction=True)
def test_window_counts_equal_the_definition(isolated_project):
    project = isolated_project
    now = datetime.now(UTC)
    base = hour_floor(now) - timedelta(days=4)
    rows = _rows(base, 4 * 24, 6000)
    store(project, rows)
    refresh()
    made = [
        Slo.objects.create(project=project, name="all", service="checkout",
                           objective="availability", target=99, window_days=7),
        Slo.objects.create(project=project, name="two", service="checkout",
                           endpoints=["/cart", "/pay"], objective="availability", target=99),
        Slo.objects.create(project=project, name="orders", service="checkout",
                           endpoint_pattern="/orders/*", environment="production",
                           objective="latency", latency_threshold_ms=90, target=95),
        Slo.objects.create(project=project, name="search fast", service="search",
                           objective="latency", latency_threshold_ms=200, target=99),
    ]  # fmt: skip
    # Evaluated at an odd minute inside the data, and at the live minute (raw tail).
    for at in (base + timedelta(days=3, hours=5, minutes=37), slos.evaluation_minute(now)):
        specs = [sli.WindowSpec(label, length, HOUR) for label, length in slos.BURN_WINDOWS.items()]
        specs.append(sli.WindowSpec("7d", timedelta(days=7), DAY))
        counts = sli.window_counts(connection, project.pk, specs, at)
        for slo in made:
            for spec in specs:
                expected = _reference(slo, rows, at - spec.length, at)
                assert counts.get(slo.pk, {}).get(spec.label, sli.Counts()) == expected, (
                    slo.name,
                    spec.label,
                    at,
                )


@pytest.mark.django_db(transaction=True)
def test_status_endpoint(isolated_project):
    project = isolated_project
    now = datetime.now(UTC)
    rows = _rows(hour_floor(now) - timedelta(days=2), 48, 3000, seed=3)
    store(project, rows)
    refresh()
    api = client_with(make_key(project))
    slo = Slo.objects.create(project=project, name="all", service="checkout",
                             objective="availability", target=99, window_days=7)  # fmt: skip
    body = api.get(f"{URL}{slo.pk}/status/").json()
    at = datetime.fromisoformat(body["at"].replace("Z", "+00:00"))
    expected = _reference(slo, rows, at - timedelta(days=7), at)
    assert body["counts"] == {"total": expected.total, "good": expected.good, "bad": expected.bad}
    assert body["sli"] == pytest.approx(expected.good / expected.total)
    budget = expected.total * 0.01
    assert body["error_budget"]["total"] == pytest.approx(budget)
    assert body["error_budget"]["remaining_fraction"] == pytest.approx(1 - expected.bad / budget)
    assert set(body["burn_rates"]) == set(slos.BURN_WINDOWS)
    one_day = _reference(slo, rows, at - timedelta(days=1), at)
    assert body["burn_rates"]["1d"] == pytest.approx(one_day.bad / one_day.total / 0.01)
    assert body["alerts"] == {"slo_page": "ok", "slo_ticket": "ok"}
    history = body["budget_history"]
    assert sum(point["total"] for point in history) == expected.total
    assert history[-1]["remaining"] == pytest.approx(body["error_budget"]["remaining_fraction"])
