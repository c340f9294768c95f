"""Reading error groups, and changing their status: what the API
(observability/api/error_groups.py) and the UI (observability/ui/errors.py) both do, so
that the two show the same numbers for the same window.

A group is *seen in a window* when it was last seen at or after its start and first
seen before its end. Its `window_count` is the sum of its hourly counts over the hours
that overlap the window (hourly granularity: a window starting at 10:20 counts the
whole 10:00 hour); without a window it is the lifetime count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import (
    BigIntegerField,
    Case,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from observability.models import ApiRequest, ErrorGroup, ErrorGroupEndpoint, ErrorGroupHour

SAMPLES = 10
ENDPOINTS = 50
DEFAULT_TIMELINE = timedelta(days=7)
MAX_TIMELINE = timedelta(days=31)  # 744 hourly points
# What a list may be sorted by (each also descending, with `-`).
ORDERINGS = ("count", "window_count", "last_seen", "first_seen")


def of_project(project_id: int, using: str | None = None) -> QuerySet[ErrorGroup]:
    """A project's groups. A group exists once its first request is stored (count 0 only
    when that request turned out unstorable): those are not shown."""
    return ErrorGroup.objects.using(using).filter(project_id=project_id, count__gt=0)


def seen(
    groups: QuerySet[ErrorGroup],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    service: str | None = None,
    endpoint: str | None = None,
    status: str | None = None,
) -> QuerySet[ErrorGroup]:
    """The groups seen in the window (`start` inclusive, `end` exclusive) that match the
    filters (`endpoint`: seen on it), annotated with their `window_count`."""
    if start is not None:
        groups = groups.filter(last_seen__gte=start)
    if end is not None:
        groups = groups.filter(first_seen__lt=end)
    if service:
        groups = groups.filter(service=service)
    if status:
        groups = groups.filter(status=status)
    if endpoint:
        seen_on = ErrorGroupEndpoint.objects.filter(group=OuterRef("pk"), endpoint=endpoint)
        groups = groups.filter(Exists(seen_on))
    return with_window_count(groups, start, end)


def with_window_count(groups: QuerySet[ErrorGroup], start=None, end=None) -> QuerySet:
    """`window_count`: the group's occurrences in the hours overlapping the window."""
    if start is None and end is None:
        return groups.annotate(window_count=F("count"))
    hours = ErrorGroupHour.objects.filter(group=OuterRef("pk"))
    if start is not None:
        hours = hours.filter(bucket__gte=hour_of(start))
    if end is not None:
        hours = hours.filter(bucket__lt=end)
    total = hours.values("group").annotate(total=Sum("count")).values("total")
    # A group seen only within the window, and since hourly retention last deleted hours,
    # has every occurrence in the window and in its hours: its count is their sum (the
    # counts and the hours are added in one transaction). Most groups of a long range
    # are such; the hours are summed for the others only (CASE evaluates its subquery
    # only when reached).
    kept_since = timezone.now() - timedelta(days=settings.APM_HOURLY_RETENTION_DAYS, hours=-1)
    inside = Q(first_seen__gte=max(start, kept_since) if start else kept_since)
    if end is not None:
        inside &= Q(last_seen__lt=end)
    window_count = Case(
        When(inside, then=F("count")),
        default=Coalesce(Subquery(total), 0),
        output_field=BigIntegerField(),
    )
    return groups.annotate(window_count=window_count)


def ordered(groups: QuerySet[ErrorGroup], ordering: str) -> QuerySet[ErrorGroup]:
    """Sorted by one of ORDERINGS (`-` for descending), ties by id in the same direction
    (stable pages)."""
    if ordering.lstrip("-") not in ORDERINGS:
        raise ValueError(f"Unknown ordering {ordering!r}.")
    return groups.order_by(ordering, "-id" if ordering.startswith("-") else "id")


def timeline_error(start: datetime, end: datetime) -> str | None:
    """Why a group's timeline cannot span this window, or None when it can."""
    if end - start > MAX_TIMELINE:
        return f"The timeline may span at most {MAX_TIMELINE.days} days."
    return None


def default_timeline(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """The timeline's window when not (or half) given: the 7 days up to `end` or now."""
    end = end or timezone.now()
    return start or end - DEFAULT_TIMELINE, end


def timeline(group: ErrorGroup, start: datetime, end: datetime) -> list[dict]:
    """The hours with occurrences (`bucket`, `count`) that overlap the window, in order."""
    hours = ErrorGroupHour.objects.using(group._state.db).filter(
        group=group, bucket__gte=hour_of(start), bucket__lt=end
    )
    return list(hours.order_by("bucket").values("bucket", "count"))


def endpoints(group: ErrorGroup) -> QuerySet[ErrorGroupEndpoint]:
    """The endpoints the group was seen on, most frequent first (ENDPOINTS of them)."""
    rows = ErrorGroupEndpoint.objects.using(group._state.db).filter(group=group)
    return rows.order_by("-count", "endpoint", "method")[:ENDPOINTS]


def samples(group: ErrorGroup, environment: str | None = None) -> QuerySet[ApiRequest]:
    """The latest stored requests of the group (raw retention), newest first."""
    rows = ApiRequest.objects.using(group._state.db).filter(
        project_id=group.project_id, error_group_id=group.pk
    )
    if environment:
        rows = rows.filter(environment=environment)
    return rows.order_by("-time")[:SAMPLES]


def set_status(group: ErrorGroup, status: str) -> ErrorGroup:
    """Resolve, ignore or reopen a group. A resolved group seen again later is reopened by
    ingest (a regression); `resolved_at` is what ingest compares with."""
    if status not in ErrorGroup.Status.values:
        raise ValueError(f"Unknown status {status!r}.")
    with transaction.atomic():
        # Ingest counts the group under the same lock (error_groups/store.py).
        group = ErrorGroup.objects.select_for_update().get(pk=group.pk)
        group.status = status
        group.resolved_at = timezone.now() if status == ErrorGroup.Status.RESOLVED else None
        group.save(update_fields=["status", "resolved_at"])
    return group


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour holding `moment` (the window's first hourly bucket)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
