"""Error groups follow the rollups' retention: hourly counts as long as hourly rollups,
a group as long as daily rollups after it was last seen (its endpoints and hours go with
it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

DELETE_OLD_HOURS = "DELETE FROM apm_error_group_hour WHERE bucket < %(hours_cutoff)s"
DELETE_OLD_GROUPS = """
WITH gone AS (
    DELETE FROM apm_error_group WHERE last_seen < %(groups_cutoff)s RETURNING id
), endpoints AS (
    DELETE FROM apm_error_group_endpoint WHERE group_id IN (SELECT id FROM gone) RETURNING 1
), hours AS (
    DELETE FROM apm_error_group_hour WHERE group_id IN (SELECT id FROM gone) RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM endpoints), (SELECT count(*) FROM hours)
"""


def apply_retention(connection: BaseDatabaseWrapper, now: datetime) -> dict[str, int]:
    """Delete error group data past retention; rows deleted per table."""
    cutoffs = {
        "hours_cutoff": now - timedelta(days=settings.APM_HOURLY_RETENTION_DAYS),
        "groups_cutoff": now - timedelta(days=settings.APM_DAILY_RETENTION_DAYS),
    }
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(DELETE_OLD_HOURS, cutoffs)
        old_hours = cursor.rowcount
        cursor.execute(DELETE_OLD_GROUPS, cutoffs)
        groups, endpoints, hours = cursor.fetchone()
    return {
        "apm_error_group": groups,
        "apm_error_group_endpoint": endpoints,
        "apm_error_group_hour": old_hours + hours,
    }
