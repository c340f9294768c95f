"""Error groups on the ingest path: each failed request gets its group, and each group
its counts, exactly once for each stored request.

Around the COPY of a batch: before it, `assign` finds or creates the group of every
failure (one statement; groups this worker has seen are cached); in its transaction,
`record` appends the batch's *new* rows (never a duplicate of a retried batch) as
deltas. The `fold` job adds the deltas to the groups' counts, hours and endpoints and
reopens resolved groups seen again. Measured cost: docs/ERRORS.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from prometheus_client import Counter

from observability import locks
from observability.error_groups.fingerprint import VERSION, Failure, group_of
from observability.ingest.cache import LruCache
from observability.ingest.events import Row

MAX_STACKTRACE_CHARS = 16_000
CACHE_ENTRIES = 20_000

# (project_id, fingerprint) -> group id. Group ids never change.
_ids: LruCache[int] = LruCache(CACHE_ENTRIES)

OPENED = Counter(
    "apm_error_groups_opened", "Error groups opened: new ones, and resolved ones seen again",
    ["reason"],
)  # fmt: skip

FIND_OR_CREATE = """
WITH given AS (
    SELECT * FROM unnest(%(fingerprints)s::text[], %(kinds)s::text[], %(services)s::text[],
                         %(endpoints)s::text[], %(titles)s::text[], %(types)s::text[],
                         %(stacktraces)s::text[], %(seen)s::timestamptz[])
        AS g(fingerprint, kind, service, endpoint, title, exception_type, stacktrace, seen)
), created AS (
    INSERT INTO apm_error_group (project_id, fingerprint, version, kind, service, endpoint,
                                 title, exception_type, stacktrace, status, first_seen,
                                 last_seen, count, times_reopened, created_at)
    SELECT %(project)s, fingerprint, %(version)s, kind, service, endpoint, title,
           exception_type, stacktrace, 'open', seen, seen, 0, 0, now()
    FROM given
    ON CONFLICT (project_id, fingerprint) DO NOTHING
    RETURNING id, fingerprint
)
SELECT id, fingerprint, true FROM created
UNION ALL
SELECT e.id, e.fingerprint, false FROM apm_error_group AS e JOIN given AS g USING (fingerprint)
WHERE e.project_id = %(project)s
"""

# Ingest only appends what a batch adds (one row per group, hour, endpoint and method):
# no batch waits for another's lock on a busy group, and the COPY's transaction gains
# one small insert. The `fold` job adds these deltas to the groups.
RECORD = """
INSERT INTO apm_error_group_delta (project_id, group_id, bucket, endpoint, method, count,
                                   first_at, last_at)
SELECT %(project)s, group_id, date_trunc('hour', time, 'UTC'), endpoint, method, count(*),
       min(time), max(time)
FROM unnest(%(groups)s::bigint[], %(times)s::timestamptz[], %(endpoints)s::text[],
            %(methods)s::text[]) AS o(group_id, time, endpoint, method)
GROUP BY 2, 3, 4, 5
"""

# Takes every delta and adds it to its group, hour and endpoint, in one statement; a
# resolved group seen after its resolution is reopened: a regression. Groups deleted
# since (retention) take their deltas with them (foreign key), and are skipped here.
FOLD = """
WITH taken AS (
    DELETE FROM apm_error_group_delta
    RETURNING project_id, group_id, bucket, endpoint, method, count, first_at, last_at
), per_group AS (
    SELECT t.group_id, sum(t.count) AS n, min(t.first_at) AS first_at,
           max(t.last_at) AS last_at,
           g.status = 'resolved' AND max(t.last_at) > g.resolved_at AS regressed
    FROM taken AS t JOIN apm_error_group AS g ON g.id = t.group_id AND g.project_id = t.project_id
    GROUP BY t.group_id, g.status, g.resolved_at
), counted AS (
    UPDATE apm_error_group AS g
    SET count = g.count + p.n,
        first_seen = least(g.first_seen, p.first_at),
        last_seen = greatest(g.last_seen, p.last_at),
        status = CASE WHEN regressed THEN 'open' ELSE g.status END,
        reopened_at = CASE WHEN regressed THEN now() ELSE g.reopened_at END,
        times_reopened = g.times_reopened + CASE WHEN regressed THEN 1 ELSE 0 END
    FROM per_group AS p
    WHERE g.id = p.group_id
    RETURNING p.regressed
), hours AS (
    INSERT INTO apm_error_group_hour (group_id, bucket, count)
    SELECT t.group_id, t.bucket, sum(t.count) FROM taken AS t
    WHERE t.group_id IN (SELECT group_id FROM per_group)
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (group_id, bucket)
    DO UPDATE SET count = apm_error_group_hour.count + EXCLUDED.count
    RETURNING 1
), endpoints AS (
    INSERT INTO apm_error_group_endpoint (group_id, endpoint, method, count, last_seen)
    SELECT t.group_id, t.endpoint, t.method, sum(t.count), max(t.last_at) FROM taken AS t
    WHERE t.group_id IN (SELECT group_id FROM per_group)
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (group_id, endpoint, method)
    DO UPDATE SET count = apm_error_group_endpoint.count + EXCLUDED.count,
                  last_seen = greatest(apm_error_group_endpoint.last_seen, EXCLUDED.last_seen)
    RETURNING 1
)
SELECT (SELECT count(*) FROM taken), (SELECT count(*) FILTER (WHERE regressed) FROM counted),
       (SELECT count(*) FROM hours), (SELECT count(*) FROM endpoints)
"""


def failure(row: Row, exception_type="", exception_message="", stacktrace="", fingerprint=""):
    """The failure a stored row (after the caps) and its event's exception describe."""
    return Failure(
        service=row.service, endpoint=row.endpoint, status_code=row.status_code,
        message=row.error_message, exception_type=exception_type,
        exception_message=exception_message, stacktrace=stacktrace, fingerprint=fingerprint,
    )  # fmt: skip


def assign(project_id: int, failures: Sequence[tuple[Failure, Row]]) -> tuple[list[int], bool]:
    """The group id of each failure (of the row it belongs to), creating new groups; and
    whether this worker had not seen one of them (new, or new to its cache)."""
    groupings = [group_of(failure) for failure, _ in failures]
    ids: dict[str, int] = {}
    missing: dict[str, tuple] = {}
    for grouping, (failure, row) in zip(groupings, failures, strict=True):
        known = _ids.get((project_id, grouping.fingerprint))
        if known is not None:
            ids[grouping.fingerprint] = known
            continue
        earliest = missing.get(grouping.fingerprint)
        if earliest is None or row.time < earliest[2].time:
            missing[grouping.fingerprint] = (grouping, failure, row)
    if missing:
        found = _find_or_create(project_id, list(missing.values()))
        ids |= found
        # Cached once the groups are committed: a rolled back batch takes its new groups
        # with it, and no later batch may point at them.
        transaction.on_commit(lambda: [_ids.put((project_id, f), i) for f, i in found.items()])
    return [ids[grouping.fingerprint] for grouping in groupings], bool(missing)


def _find_or_create(project_id: int, new: list[tuple]) -> dict[str, int]:
    endpoint_kinds = ("exception", "message", "status")  # the endpoint is in their key
    params = {
        "project": project_id,
        "version": VERSION,
        "fingerprints": [g.fingerprint for g, _, _ in new],
        "kinds": [g.kind for g, _, _ in new],
        "services": [f.service for _, f, _ in new],
        "endpoints": [f.endpoint if g.kind in endpoint_kinds else "" for g, f, _ in new],
        "titles": [g.title for g, _, _ in new],
        "types": [f.exception_type[:255] for _, f, _ in new],
        "stacktraces": [f.stacktrace[:MAX_STACKTRACE_CHARS] for _, f, _ in new],
        "seen": [row.time for _, _, row in new],
    }
    with connection.cursor() as cursor:
        cursor.execute(FIND_OR_CREATE, params)
        rows = cursor.fetchall()
        if len(rows) < len(new):
            # A concurrent batch created one of the groups after this statement began:
            # its INSERT skipped the row, and the statement's snapshot cannot see it.
            # The next statement can (read committed).
            cursor.execute(FIND_OR_CREATE, params)
            rows = cursor.fetchall()
    created = sum(1 for _, _, is_new in rows if is_new)
    if created:
        transaction.on_commit(lambda: OPENED.labels("new").inc(created))
    return {fingerprint: group_id for group_id, fingerprint, _ in rows}


def record(project_id: int, occurrences: Sequence[Row]) -> None:
    """Note stored rows (new ones only) for their groups, in the caller's transaction (the
    one that stores them: a rolled back batch counts nothing, a retried one once)."""
    if not occurrences:
        return
    with connection.cursor() as cursor:
        cursor.execute(RECORD, {
            "project": project_id, "groups": [row.error_group_id for row in occurrences],
            "times": [row.time for row in occurrences],
            "endpoints": [row.endpoint for row in occurrences],
            "methods": [row.method for row in occurrences],
        })  # fmt: skip


def fold(using: BaseDatabaseWrapper = connection) -> int:
    """Add every recorded occurrence to its group (the `error_group_counts` job, every
    few seconds: a group's counts trail its requests by that much). Returns how many
    deltas were folded."""
    with transaction.atomic(using=using.alias), using.cursor() as cursor:
        # One fold at a time (run_jobs on two hosts): the second waits, then finds none.
        locks.xact_lock(cursor, locks.Lock.ERROR_GROUP_FOLD)
        cursor.execute(FOLD)
        taken, regressions, _, _ = cursor.fetchone()
    if regressions:
        OPENED.labels("regression").inc(regressions)
    return taken


def forget_cache() -> None:
    """For tests: start again from what the database says."""
    _ids.clear()
