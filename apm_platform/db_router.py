"""Primary/replica database router.

`default` is the primary. With replicas configured (DATABASE_REPLICA_URLS), reads of
request records and endpoints (and the KPI queries, through `read_alias`) go to a
healthy replica, round robin. Everything else, every write, every migration and every
read inside `transaction.atomic` or of a pinned request uses the primary. Without
replicas the router returns at once and costs nothing.

Replica health is checked per process and cached for REPLICA_CHECK_INTERVAL_S: a
replica whose replay lag exceeds REPLICA_MAX_LAG_S is skipped; one that cannot be
reached is skipped for REPLICA_RETRY_AFTER_S before it is tried again.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from prometheus_client import Counter, Gauge

from apm_platform import db_routing

logger = logging.getLogger(__name__)

# Replay lag in seconds, on a standby: zero when it has replayed all it received (an idle
# primary sends nothing, so the last replay time alone would look like growing lag).
REPLAY_LAG = """
CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
     ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
END
"""
LAG_SQL = f"SELECT pg_is_in_recovery(), {REPLAY_LAG}"

READS = Counter("apm_db_reads_total", "Reads routed, by database alias.", ["database"])
REPLICA_LAG = Gauge(
    "apm_db_replica_lag_seconds", "Replay lag of a replica at its last check.", ["database"],
    multiprocess_mode="mostrecent",
)  # fmt: skip
REPLICA_UP = Gauge(
    "apm_db_replica_up", "1 if the replica was usable at its last check.", ["database"],
    multiprocess_mode="mostrecent",
)  # fmt: skip


@dataclasses.dataclass
class ReplicaStatus:
    alias: str
    reachable: bool = False
    in_recovery: bool = False
    lag_s: float | None = None
    checked_at: float = 0.0
    retry_at: float = 0.0
    error: str = ""

    @property
    def usable(self) -> bool:
        return (
            self.reachable
            and self.in_recovery
            and self.lag_s is not None
            and self.lag_s <= settings.REPLICA_MAX_LAG_S
        )


_status: dict[str, ReplicaStatus] = {}
_round_robin = itertools.count()


def replica_status(alias: str) -> ReplicaStatus:
    """The cached status of a replica, probed again when stale."""
    now = time.monotonic()
    status = _status.get(alias)
    if status and not status.reachable and now < status.retry_at:
        return status
    if status is None or now - status.checked_at >= settings.REPLICA_CHECK_INTERVAL_S:
        status = _probe(alias, now)
        _status[alias] = status
    return status


def _probe(alias: str, now: float) -> ReplicaStatus:
    status = ReplicaStatus(alias, checked_at=now)
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(LAG_SQL)
            status.in_recovery, lag = cursor.fetchone()
        status.reachable, status.lag_s = True, float(lag)
    except DatabaseError as exc:
        connections[alias].close()
        status.retry_at = now + settings.REPLICA_RETRY_AFTER_S
        status.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning("replica %s unreachable, retry in %ss: %s", alias,
                       settings.REPLICA_RETRY_AFTER_S, status.error)  # fmt: skip
    if status.reachable and not status.in_recovery:
        logger.error("replica %s is not in recovery (a primary?): not used for reads", alias)
    REPLICA_UP.labels(alias).set(1 if status.usable else 0)
    if status.lag_s is not None:
        REPLICA_LAG.labels(alias).set(status.lag_s)
    return status


def mark_unreachable(alias: str) -> None:
    """A query on this replica failed: stop using it until its retry time."""
    if alias in settings.DATABASE_REPLICAS:
        _status[alias] = ReplicaStatus(
            alias, checked_at=time.monotonic(),
            retry_at=time.monotonic() + settings.REPLICA_RETRY_AFTER_S, error="query failed",
        )  # fmt: skip


def read_alias() -> str:
    """The database this request should read replicated data from."""
    replicas = settings.DATABASE_REPLICAS
    if not replicas or db_routing.is_pinned() or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        READS.labels(DEFAULT_DB_ALIAS).inc()
        return DEFAULT_DB_ALIAS
    start = next(_round_robin)
    for offset in range(len(replicas)):
        alias = replicas[(start + offset) % len(replicas)]
        if replica_status(alias).usable:
            READS.labels(alias).inc()
            return alias
    READS.labels(DEFAULT_DB_ALIAS).inc()
    return DEFAULT_DB_ALIAS


def forget_status() -> None:
    """For tests: probe every replica afresh."""
    _status.clear()


class PrimaryReplicaRouter:
    def db_for_read(self, model, **hints):
        if model._meta.label in settings.DATABASE_REPLICA_READ_MODELS:
            return read_alias()
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # Replicas hold the same data as the primary.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS
