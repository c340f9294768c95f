"""The app's PostgreSQL advisory locks, every key in one place so that no two uses collide.

All are transaction-scoped (released at commit or rollback). A lock with a scope (e.g.
one project's service) uses PostgreSQL's two-key form, a key space of its own apart from
the one-key locks.
"""

from __future__ import annotations

import enum


class Lock(enum.IntEnum):
    # Values are arbitrary but fixed: processes of different versions must agree on them.
    ROLLUP_REFRESH = 0x61706D72  # "apmr": one refresher of the portable rollups at a time
    PARTITIONS = 0x61706D70  # "apmp": one creator of daily partitions at a time
    DIMENSION_ADMISSION = 0x61706D65  # "apme", per project, dimension and scope: the caps
    ERROR_GROUP_FOLD = 0x61706D67  # "apmg": one folder of error-group deltas at a time
    ALERT_STATE = 0x61706D61  # "apma", per project and alert kind: one evaluator at a time


def xact_lock(cursor, lock: Lock, scope: str | None = None) -> None:
    """Wait for `lock` (for `scope`, if given) until the transaction ends."""
    if scope is None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock.value])
    else:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [lock.value, scope])
