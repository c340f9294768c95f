"""Notifications: the delivery outbox and the channels that send it.

A transition (state.py) becomes one Delivery per channel that an enabled rule routes its
kind to, in the transaction that records it. The `notifications` job drains the outbox
in a thread of its own, so a slow or dead receiver never delays the scheduler's other
jobs (alert evaluation, rollups): each due delivery is claimed (skip-locked, with a lease
so that a crashed sender's claim expires), sent once, logged as a DeliveryAttempt, and
either marked sent or retried with back-off (BACKOFF) until MAX_ATTEMPTS, then failed.
Every attempt updates its channel's health (API and /metrics).

Webhooks carry `X-APM-Signature: sha256=<hex>`, the HMAC-SHA256 with the channel's
secret of `<X-APM-Timestamp>.<body>` (the timestamp in the signed text stops replays of
an old body); docs/ALERTING.md shows how to verify it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import mail
from django.db import connections, transaction
from django.db.models import F, Q

from observability.alerting.models import (
    AlertEvent,
    Channel,
    Delivery,
    DeliveryAttempt,
)

logger = logging.getLogger(__name__)

# Wait before attempt n+1 after n failures; MAX_ATTEMPTS attempts in all (about 2 hours).
BACKOFF = tuple(timedelta(seconds=s) for s in (30, 60, 120, 300, 600, 1800, 3600))
MAX_ATTEMPTS = len(BACKOFF) + 1
# A claimed delivery is the claimer's this long; past it (a crashed sender) it is due again.
LEASE = timedelta(minutes=5)
BATCH = 100
MAX_ERROR_CHARS = 2000
SIGNATURE_HEADER = "X-APM-Signature"
TIMESTAMP_HEADER = "X-APM-Timestamp"


def enqueue(project_id: int, kind: str, events: list[AlertEvent], at: datetime) -> int:
    """One pending delivery per (event, channel routed to by an enabled rule of the kind)."""
    channels = Channel.objects.filter(
        project_id=project_id, enabled=True,
        rules__enabled=True, rules__project_id=project_id,
    ).filter(Q(rules__kinds__len=0) | Q(rules__kinds__contains=[kind])).distinct()  # fmt: skip
    deliveries = [
        Delivery(project_id=project_id, channel=channel, event=event, next_attempt_at=at,
                 created_at=at)
        for event in events
        for channel in channels
    ]  # fmt: skip
    Delivery.objects.bulk_create(deliveries)
    return len(deliveries)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value of the signature header for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def message(event: AlertEvent, project_slug: str) -> dict:
    """The JSON a webhook receives (and what the other channels format)."""
    alert = event.alert
    return {
        "event_id": event.pk,
        "alert_id": alert.pk,
        "project": project_slug,
        "kind": alert.kind,
        "key": alert.key,
        "state": event.state,
        "at": event.at.isoformat(),
        "summary": event.summary,
        "details": event.payload,
    }


# --- sending --------------------------------------------------------------------------------


def drain(now: datetime | None = None, limit: int = BATCH) -> dict[str, int]:
    """Send the deliveries due at `now` (at most `limit`); counts by outcome."""
    now = now or datetime.now(UTC)
    outcome = {"sent": 0, "retry": 0, "failed": 0}
    for delivery in _claim(now, limit):
        outcome[_attempt(delivery, now)] += 1
    return outcome


def _claim(now: datetime, limit: int) -> list[Delivery]:
    with transaction.atomic():
        # SKIP LOCKED: two senders (two app nodes) split the due deliveries between them.
        due = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=Delivery.State.PENDING, next_attempt_at__lte=now)
            .select_related("channel", "event__alert", "project")
            .order_by("next_attempt_at")[:limit]
        )
        Delivery.objects.filter(pk__in=[d.pk for d in due]).update(next_attempt_at=now + LEASE)
    return due


def _attempt(delivery: Delivery, now: datetime) -> str:
    started = time.perf_counter()
    status_code, error = None, ""
    try:
        status_code = SENDERS[delivery.channel.type](delivery.channel, delivery)
    except Exception as exc:  # any failure of a receiver is logged and retried
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        status_code = getattr(exc, "code", None)
    ok = not error
    attempts = delivery.attempts + 1
    if ok:
        state, next_at = Delivery.State.SENT, now
    elif attempts >= MAX_ATTEMPTS:
        state, next_at = Delivery.State.FAILED, now
    else:
        state, next_at = Delivery.State.PENDING, now + BACKOFF[attempts - 1]
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery, at=now, ok=ok, status_code=status_code, error=error,
            duration_ms=(time.perf_counter() - started) * 1000,
        )  # fmt: skip
        Delivery.objects.filter(pk=delivery.pk).update(
            state=state, attempts=attempts, next_attempt_at=next_at, last_error=error,
            sent_at=now if ok else None,
        )  # fmt: skip
        _update_health(delivery.channel_id, ok, error, now)
    if not ok:
        logger.warning("notification %s to channel %s failed (attempt %s): %s",
                       delivery.pk, delivery.channel_id, attempts, error)  # fmt: skip
    return "sent" if ok else ("failed" if state == Delivery.State.FAILED else "retry")


def _update_health(channel_id: int, ok: bool, error: str, now: datetime) -> None:
    channels = Channel.objects.filter(pk=channel_id)
    if ok:
        channels.update(last_success_at=now, consecutive_failures=0,
                        deliveries_total=F("deliveries_total") + 1)  # fmt: skip
    else:
        channels.update(
            last_failure_at=now,
            last_error=error,
            consecutive_failures=F("consecutive_failures") + 1,
            failures_total=F("failures_total") + 1,
        )


def _post_json(url: str, body: bytes, headers: dict[str, str]) -> int:
    # The API accepts only http(s) URLs (URLField); checked again so that no other scheme
    # (file:, ftp:) ever reaches urlopen.
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url[:100]}")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    # urlopen raises HTTPError (which has .code) for any status >= 400.
    timeout = settings.APM_NOTIFY_TIMEOUT_S
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return response.status


def _send_webhook(channel: Channel, delivery: Delivery) -> int:
    body = json.dumps(message(delivery.event, delivery.project.slug), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {TIMESTAMP_HEADER: timestamp, "X-APM-Delivery": str(delivery.pk)}
    if channel.secret:
        headers[SIGNATURE_HEADER] = signature(channel.secret, timestamp, body)
    return _post_json(channel.url, body, headers)


def _text(delivery: Delivery) -> str:
    event = delivery.event
    return f"[{event.state.upper()}] {delivery.project.slug} {event.alert.kind}: {event.summary}"


def _send_slack(channel: Channel, delivery: Delivery) -> int:
    return _post_json(channel.url, json.dumps({"text": _text(delivery)}).encode(), {})


def _send_email(channel: Channel, delivery: Delivery) -> None:
    body = json.dumps(message(delivery.event, delivery.project.slug), indent=2, sort_keys=True)
    mail.send_mail(_text(delivery)[:200], body, None, channel.emails, fail_silently=False)


SENDERS = {
    Channel.Type.WEBHOOK: _send_webhook,
    Channel.Type.SLACK: _send_slack,
    Channel.Type.EMAIL: _send_email,
}


# --- off the scheduler's thread -----------------------------------------------------------

_sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apm-notify")
_running: Future | None = None


def drain_in_background() -> str:
    """Start a drain in the sender thread unless one still runs; never waits for it."""
    global _running
    if _running is not None and not _running.done():
        return "still sending"
    _running = _sender.submit(_drain_and_close)
    return "started"


def _drain_and_close() -> dict[str, int] | None:
    try:
        return drain()
    except Exception:
        logger.exception("notification sender failed")
        return None
    finally:
        connections.close_all()  # this thread's own connections
