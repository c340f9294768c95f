"""Notifications: channels and rules through the API, signed webhooks received by a real
HTTP server (a thread of this process), retries with back-off and their log, Slack and
e-mail bodies, the sender off the scheduler's thread, and error groups as alerts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.management import call_command

from observability import jobs
from observability.alerting import error_groups, notify, slos, state
from observability.alerting.models import Alert, Channel, Delivery, NotificationRule, Slo
from observability.analytics.rollups import hour_floor
from observability.models import ApiKey, ErrorGroup
from observability.tests.traffic import send, steady
from observability.tests.utils import client_with, event_payload, make_key, make_project

MINUTE = timedelta(minutes=1)
SECRET = "s3cret-for-tests"


class Receiver:
    """A local HTTP server that records what it receives and answers `statuses` in turn
    (then 200); `gate`, when set, holds every answer until released."""

    def __init__(self, statuses=(), gate: threading.Event | None = None):
        self.received: list[dict] = []
        self.statuses = list(statuses)
        self.gate = gate
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                # Header names are case-insensitive (urllib sends "X-apm-signature").
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.received.append({"headers": headers, "body": body})
                if receiver.gate is not None:
                    receiver.gate.wait(timeout=30)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def verified(request: dict) -> dict:
    """The JSON of a received webhook, after checking its signature as a receiver would."""
    headers, body = request["headers"], request["body"]
    signed = headers["x-apm-timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-apm-signature"], expected)
    return json.loads(body)


@pytest.fixture
def admin(project):
    return client_with(make_key(project, ApiKey.SCOPES))


def webhook(project, url, kinds=()) -> Channel:
    channel = Channel.objects.create(project=project, name="hook", type="webhook", url=url,
                                     secret=SECRET)  # fmt: skip
    rule = NotificationRule.objects.create(project=project, name="all", kinds=list(kinds))
    rule.channels.add(channel)
    return channel


# --- the API ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_channels_and_rules_through_the_api(admin, project):
    created = admin.post("/api/v1/notification-channels/", {
        "name": "ops", "type": "webhook", "url": "https://example.com/hook", "secret": "k",
    }, format="json")  # fmt: skip
    assert created.status_code == 201, created.json()
    channel = created.json()
    assert "secret" not in channel and channel["consecutive_failures"] == 0
    rule = admin.post("/api/v1/notification-rules/", {
        "name": "pages", "kinds": ["slo_page"], "channels": [channel["id"]],
    }, format="json")  # fmt: skip
    assert rule.status_code == 201, rule.json()
    assert admin.get("/api/v1/notification-rules/").json()["results"][0]["channels"] == [
        channel["id"]
    ]
    theirs = Channel.objects.create(project=make_project("globex"), name="x", type="email",
                                    emails=["a@example.com"])  # fmt: skip
    response = admin.post("/api/v1/notification-rules/",
                          {"name": "x", "channels": [theirs.pk]}, format="json")  # fmt: skip
    assert response.status_code == 400 and "channels" in response.json()["errors"]
    assert admin.get(f"/api/v1/notification-channels/{theirs.pk}/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "webhook"}, "url"),
        ({"type": "slack", "url": "ftp://example.com/x"}, "url"),
        ({"type": "email"}, "emails"),
        ({"type": "email", "emails": ["not an address"]}, "emails.0"),
        ({"type": "pager"}, "type"),
        ({"type": "webhook", "url": "https://example.com", "retries": 3}, "retries"),
    ],
)
def test_bad_channels_are_400_naming_the_field(admin, fields, field):
    response = admin.post("/api/v1/notification-channels/", {"name": "c", **fields},
                          format="json")  # fmt: skip
    assert response.status_code == 400 and field in response.json()["errors"], response.json()


@pytest.mark.django_db
def test_configuration_changes_need_admin(project):
    reader = client_with(make_key(project, [ApiKey.SCOPE_READ, ApiKey.SCOPE_INGEST]))
    assert reader.get("/api/v1/notification-channels/").status_code == 200
    response = reader.post("/api/v1/notification-channels/",
                           {"name": "e", "type": "email", "emails": ["a@example.com"]},
                           format="json")  # fmt: skip
    assert response.status_code == 403


# --- state machine and delivery ------------------------------------------------------------


@pytest.mark.django_db
def test_a_transition_is_sent_once_and_signed(project):
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    with Receiver() as receiver:
        webhook(project, receiver.url, kinds=["anomaly"])
        for minute in range(3):  # firing three evaluations in a row: one notification
            state.record(project.pk, "anomaly", "checkout /pay p95", True, at + minute * MINUTE,
                         summary="p95 is 5x its baseline")  # fmt: skip
        state.record(project.pk, "error_group", "7", True, at)  # not routed by the rule
        assert notify.drain(at + 3 * MINUTE) == {"sent": 1, "retry": 0, "failed": 0}
        state.record(project.pk, "anomaly", "checkout /pay p95", False, at + 5 * MINUTE)
        state.record(project.pk, "anomaly", "checkout /pay p95", False, at + 6 * MINUTE)
        assert notify.drain(at + 7 * MINUTE)["sent"] == 1
    bodies = [verified(request) for request in receiver.received]
    assert [(b["state"], b["kind"], b["key"]) for b in bodies] == [
        ("firing", "anomaly", "checkout /pay p95"), ("resolved", "anomaly", "checkout /pay p95"),
    ]  # fmt: skip
    assert bodies[0]["summary"] == "p95 is 5x its baseline" and bodies[0]["project"] == "acme"


@pytest.mark.django_db
def test_a_tampered_body_fails_verification():
    body = b'{"state": "firing"}'
    header = notify.signature(SECRET, "1700000000", body)
    request = {"headers": {"x-apm-timestamp": "1700000000", "x-apm-signature": header},
               "body": body.replace(b"firing", b"resolved")}  # fmt: skip
    with pytest.raises(AssertionError):
        verified(request)


@pytest.mark.django_db
def test_failures_are_retried_with_back_off_logged_and_visible(project, admin, client):
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    with Receiver(statuses=[500, 503]) as receiver:
        channel = webhook(project, receiver.url)
        state.record(project.pk, "anomaly", "k", True, at)
        assert notify.drain(at)["retry"] == 1
        assert notify.drain(at + notify.BACKOFF[0] / 2) == {"sent": 0, "retry": 0, "failed": 0}
        assert notify.drain(at + notify.BACKOFF[0])["retry"] == 1
        failing = admin.get(f"/api/v1/notification-channels/{channel.pk}/").json()
        assert failing["consecutive_failures"] == 2 and "503" in failing["last_error"]
        metrics = client.get("/metrics").content.decode()
        assert 'apm_notification_channel_consecutive_failures{channel="hook"' in metrics
        assert notify.drain(at + notify.BACKOFF[0] + notify.BACKOFF[1])["sent"] == 1
    log = admin.get(f"/api/v1/notification-channels/{channel.pk}/deliveries/").json()["results"]
    assert [(a["ok"], a["status_code"]) for a in log[0]["log"]] == [
        (False, 500),
        (False, 503),
        (True, 200),
    ]
    assert log[0]["state"] == "sent" and log[0]["attempts"] == 3
    assert admin.get(f"/api/v1/notification-channels/{channel.pk}/").json()[
        "consecutive_failures"] == 0  # fmt: skip


@pytest.mark.django_db
def test_a_delivery_gives_up_after_the_last_attempt(project):
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    channel = webhook(project, "http://127.0.0.1:9/nothing-listens")
    state.record(project.pk, "anomaly", "k", True, at)
    moment = at
    for wait in (timedelta(0), *notify.BACKOFF):
        moment += wait
        notify.drain(moment)
    delivery = Delivery.objects.get(channel=channel)
    assert delivery.state == "failed" and delivery.attempts == notify.MAX_ATTEMPTS
    channel.refresh_from_db()
    assert channel.failures_total == notify.MAX_ATTEMPTS


@pytest.mark.django_db
def test_slack_and_email_channels(project, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    at = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    with Receiver() as receiver:
        slack = Channel.objects.create(project=project, name="slack", type="slack",
                                       url=receiver.url)  # fmt: skip
        email = Channel.objects.create(project=project, name="mail", type="email",
                                       emails=["oncall@example.com"])  # fmt: skip
        rule = NotificationRule.objects.create(project=project, name="r")
        rule.channels.add(slack, email)
        state.record(project.pk, "slo_page", "3", True, at, summary="SLO 'pay' burns")
        assert notify.drain(at)["sent"] == 2
    assert json.loads(receiver.received[0]["body"]) == {
        "text": "[FIRING] acme slo_page: SLO 'pay' burns"
    }
    (message,) = mail.outbox
    assert message.to == ["oncall@example.com"] and "FIRING" in message.subject
    assert json.loads(message.body)["key"] == "3"


@pytest.mark.django_db(transaction=True)
def test_sending_runs_beside_the_scheduler_not_in_it(isolated_project):
    gate = threading.Event()
    with Receiver(gate=gate) as receiver:
        webhook(isolated_project, receiver.url)
        state.record(isolated_project.pk, "anomaly", "k", True, datetime.now(UTC))
        assert jobs.deliver_notifications() == "started"
        # The receiver holds the answer: the job returned without waiting for it, and the
        # next run does not start a second sender.
        assert jobs.deliver_notifications() == "still sending"
        gate.set()
        assert notify._running.result(timeout=30) == {"sent": 1, "retry": 0, "failed": 0}
    assert len(receiver.received) == 1


# --- end to end: SLO burn and error groups ------------------------------------------------


def refresh():
    call_command("refresh_apirequest_hourly", verbosity=0)
    call_command("refresh_apirequest_daily", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_a_page_and_its_resolution_reach_the_webhook_signed(isolated_project, isolated_api):
    project = isolated_project
    start = hour_floor(datetime.now(UTC)) - timedelta(hours=4)
    send(isolated_api, steady(start - timedelta(hours=7), timedelta(hours=7), 30, 0.0)
         + steady(start, 20 * MINUTE, 30, 0.5)
         + steady(start + 20 * MINUTE, 2 * 60 * MINUTE, 30, 0.0))  # fmt: skip
    refresh()
    Slo.objects.create(project=project, name="pay", service="checkout",
                       objective="availability", target=99.9)  # fmt: skip
    with Receiver() as receiver:
        webhook(project, receiver.url, kinds=["slo_page"])
        for minute in range(0, 100, 2):
            at = start + minute * MINUTE
            slos.run_alerts(project.pk, at)
            notify.drain(at)
    bodies = [verified(request) for request in receiver.received]
    assert [b["state"] for b in bodies] == ["firing", "resolved"]
    assert bodies[0]["details"]["slo"] == "pay" and bodies[0]["kind"] == "slo_page"
    firing, resolved = (datetime.fromisoformat(b["at"]) for b in bodies)
    assert start < firing <= start + 2 * MINUTE
    # Resolves once the short windows are clean: 5 minutes after the outage for the 1 h
    # pair; the 6 h / 30 m pair keeps it firing while the 30 m window still burns 6x.
    assert start + 20 * MINUTE < resolved <= start + 60 * MINUTE


@pytest.mark.django_db
def test_new_reopened_and_resolved_error_groups_are_alerts(project, ingest):
    now = datetime.now(UTC)
    response = ingest([event_payload(status_code=500, error_message="boom")])
    assert response.status_code == 200
    group = ErrorGroup.objects.get(project=project)
    assert error_groups.sync(now) == 1
    assert error_groups.sync(now + MINUTE) == 0  # still open: nothing new
    alert = Alert.objects.get(project=project, kind="error_group")
    assert alert.state == "firing" and alert.key == str(group.pk)
    assert alert.payload["event"] == "new"
    ErrorGroup.objects.filter(pk=group.pk).update(
        status="resolved", resolved_at=now - timedelta(hours=1)
    )
    assert error_groups.sync(now + 2 * MINUTE) == 1
    alert.refresh_from_db()
    assert alert.state == "resolved"
    ingest([event_payload(status_code=500, error_message="boom")])  # a regression
    group.refresh_from_db()
    assert group.status == "open" and group.times_reopened == 1
    assert error_groups.sync(now + 3 * MINUTE) == 1
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.payload["event"] == "reopened"
    assert [e.state for e in alert.events.order_by("at")] == ["firing", "resolved", "firing"]
