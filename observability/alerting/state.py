"""The alert state machine every alert kind goes through.

An alert is (project, kind, key): an SLO's page or ticket rule, an anomaly's baseline, an
error group. Whoever evaluates a kind reports what it found (`record_many`, or `record`
for one key); only transitions are written and notified:

    ok/resolved --firing--> firing --not firing--> resolved

Reporting `firing` again while the alert fires changes nothing (no second notification);
reporting `not firing` for a key that never fired writes nothing either, so a rule that is
fine costs no row. Each transition is an AlertEvent (the history) and one outbox
delivery per channel that a rule routes the kind to (notify.py sends them off the
scheduler's thread).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction

from observability import locks
from observability.alerting import notify
from observability.alerting.models import Alert, AlertEvent


@dataclasses.dataclass(frozen=True)
class Finding:
    """One key's evaluation: whether it fires now, and what to tell people."""

    key: str
    firing: bool
    summary: str = ""
    payload: dict = dataclasses.field(default_factory=dict)


def record(
    project_id: int,
    kind: str,
    key: str,
    firing: bool,
    at: datetime,
    summary: str = "",
    payload: dict | None = None,
) -> AlertEvent | None:
    """Apply one finding; the transition it caused, if any."""
    events = record_many(project_id, kind, [Finding(key, firing, summary, payload or {})], at)
    return events[0] if events else None


def record_many(
    project_id: int,
    kind: str,
    findings: Iterable[Finding],
    at: datetime,
    resolve_missing: bool = False,
) -> list[AlertEvent]:
    """Apply the findings of one evaluation of `kind` in a project; the transitions.

    `resolve_missing`: the findings are every key that fires now (a detector that reports
    only its anomalies), so a firing alert whose key is absent resolves.
    """
    findings = {finding.key: finding for finding in findings}
    with transaction.atomic():
        with connection.cursor() as cursor:
            # One evaluator of a (project, kind) at a time: no lost transition, no
            # duplicate alert row between two schedulers.
            locks.xact_lock(cursor, locks.Lock.ALERT_STATE, f"{project_id}:{kind}")
        alerts = Alert.objects.filter(project_id=project_id, kind=kind)
        if resolve_missing:
            alerts = alerts.filter(state=Alert.State.FIRING) | alerts.filter(key__in=findings)
            known = {alert.key: alert for alert in alerts}
            for key in known.keys() - findings.keys():
                findings[key] = Finding(key, firing=False, summary=known[key].summary)
        else:
            known = {alert.key: alert for alert in alerts.filter(key__in=findings)}
        events = [
            event
            for finding in findings.values()
            if (event := _apply(project_id, kind, known.get(finding.key), finding, at))
        ]
        if events:
            AlertEvent.objects.bulk_create(events)
            notify.enqueue(project_id, kind, events, at)
    return events


def _apply(project_id, kind, alert: Alert | None, finding: Finding, at) -> AlertEvent | None:
    firing = alert is not None and alert.state == Alert.State.FIRING
    if finding.firing == firing:
        return None  # no transition: nothing written, nothing sent
    if alert is None:
        alert = Alert(project_id=project_id, kind=kind, key=finding.key)
    alert.state = Alert.State.FIRING if finding.firing else Alert.State.RESOLVED
    alert.summary, alert.payload, alert.changed_at = finding.summary, finding.payload, at
    if finding.firing:
        alert.fired_at, alert.resolved_at = at, None
    else:
        alert.resolved_at = at
    alert.save()
    return AlertEvent(
        project_id=project_id, alert=alert, state=alert.state, at=at,
        summary=finding.summary, payload=finding.payload,
    )  # fmt: skip
