"""`/api/v1/alerts/`: alert states and their history, per project, with checked filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from observability.alerting import state
from observability.alerting.models import Alert, Slo
from observability.models import ApiKey
from observability.tests.utils import client_with, make_key, make_project

pytestmark = pytest.mark.django_db
AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def test_list_filter_and_history(api, project):
    state.record(project.pk, "anomaly", "a", True, AT, summary="up")
    state.record(project.pk, "anomaly", "a", False, AT + timedelta(minutes=3))
    state.record(project.pk, "error_group", "9", True, AT + timedelta(minutes=1))
    state.record(make_project("globex").pk, "anomaly", "theirs", True, AT)
    listed = api.get("/api/v1/alerts/").json()["results"]
    assert [(a["kind"], a["key"], a["state"]) for a in listed] == [
        ("anomaly", "a", "resolved"), ("error_group", "9", "firing"),
    ]  # fmt: skip
    firing = api.get("/api/v1/alerts/", {"state": "firing"}).json()["results"]
    assert [a["key"] for a in firing] == ["9"]
    detail = api.get(f"/api/v1/alerts/{listed[0]['id']}/").json()
    assert [e["state"] for e in detail["history"]] == ["resolved", "firing"]
    assert detail["history"][1]["summary"] == "up"
    theirs = Alert.objects.get(key="theirs")
    assert api.get(f"/api/v1/alerts/{theirs.pk}/").status_code == 404


def test_bad_filters_are_400(api):
    response = api.get("/api/v1/alerts/", {"state": "burning"})
    assert response.status_code == 400 and "state" in response.json()["errors"]


def test_alerts_are_read_only(project):
    admin = client_with(make_key(project, ApiKey.SCOPES))
    assert admin.post("/api/v1/alerts/", {}, format="json").status_code == 405


def test_deleting_an_slo_forgets_its_alerts(project):
    admin = client_with(make_key(project, ApiKey.SCOPES))
    slo = Slo.objects.create(project=project, name="up", service="s", objective="availability",
                             target=99)  # fmt: skip
    state.record(project.pk, "slo_page", str(slo.pk), True, AT)
    state.record(project.pk, "anomaly", str(slo.pk), True, AT)  # same key, other kind
    assert admin.delete(f"/api/v1/slos/{slo.pk}/").status_code == 204
    assert list(Alert.objects.values_list("kind", flat=True)) == ["anomaly"]


def test_retention_deletes_old_history_and_keeps_states(project, settings):
    from observability.alerting import notify, retention
    from observability.alerting.models import AlertEvent, Channel, Delivery, NotificationRule

    channel = Channel.objects.create(project=project, name="c", type="webhook",
                                     url="http://127.0.0.1:9/")  # fmt: skip
    NotificationRule.objects.create(project=project, name="r").channels.add(channel)
    state.record(project.pk, "anomaly", "old", True, AT)
    notify.drain(AT)  # fails: one attempt logged
    state.record(project.pk, "anomaly", "new", True, AT + timedelta(days=200))
    deleted = retention.apply_retention(AT + timedelta(days=200))
    assert deleted == {"apm_notification_attempt": 1, "apm_notification_delivery": 1,
                       "apm_alert_event": 1}  # fmt: skip
    assert list(AlertEvent.objects.values_list("alert__key", flat=True)) == ["new"]
    assert Delivery.objects.count() == 1 and Alert.objects.count() == 2
