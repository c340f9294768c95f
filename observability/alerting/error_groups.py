"""Error groups as alerts: a new or reopened group fires, a resolved or ignored one resolves.

Driven by the per-minute job, never by ingest (which must not wait for notifications):
each run compares the groups with their alerts' states, both ways, in two small queries:
open groups that appeared or reopened within LOOKBACK and have no firing alert, and
firing alerts whose group is no longer open (or gone). LOOKBACK bounds the first run on a
database with old groups: groups quiet for longer than that are not announced.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Cast

from observability.alerting import state
from observability.alerting.models import Alert
from observability.models import ErrorGroup

KIND = Alert.Kind.ERROR_GROUP
LOOKBACK = timedelta(hours=1)


def sync(at: datetime) -> int:
    """Record the error groups' transitions since the last run; how many findings."""
    firing = Alert.objects.filter(
        project_id=OuterRef("project_id"), kind=KIND, state=Alert.State.FIRING,
        key=Cast(OuterRef("pk"), output_field=Alert._meta.get_field("key")),
    )  # fmt: skip
    since = at - LOOKBACK
    opened = (
        ErrorGroup.objects.filter(status=ErrorGroup.Status.OPEN, count__gt=0)
        .filter(Q(created_at__gte=since) | Q(reopened_at__gte=since))
        .filter(~Exists(firing))
    )
    findings: dict[int, list[state.Finding]] = defaultdict(list)
    for group in opened:
        reopened = group.reopened_at is not None and group.reopened_at >= since
        verb = "reopened" if reopened else "new"
        findings[group.project_id].append(state.Finding(
            key=str(group.pk), firing=True, summary=f"{verb} error group in {group.service}: "
            f"{group.title[:200]}", payload=_payload(group, verb),
        ))  # fmt: skip
    open_groups = ErrorGroup.objects.filter(
        project_id=OuterRef("project_id"), status=ErrorGroup.Status.OPEN,
        pk=Cast(OuterRef("key"), output_field=ErrorGroup._meta.pk),
    )  # fmt: skip
    for alert in Alert.objects.filter(kind=KIND, state=Alert.State.FIRING).filter(
        ~Exists(open_groups)
    ):
        findings[alert.project_id].append(state.Finding(
            key=alert.key, firing=False, summary=f"error group {alert.key} resolved",
            payload=alert.payload,
        ))  # fmt: skip
    for project_id, found in findings.items():
        state.record_many(project_id, KIND, found, at)
    return sum(len(found) for found in findings.values())


def _payload(group: ErrorGroup, verb: str) -> dict:
    return {
        "error_group_id": group.pk, "event": verb, "service": group.service,
        "endpoint": group.endpoint, "title": group.title[:500],
        "exception_type": group.exception_type, "count": group.count,
        "first_seen": group.first_seen.isoformat(), "last_seen": group.last_seen.isoformat(),
    }  # fmt: skip
