"""Primary/replica database router.

`default` is the primary. With replicas configured (DATABASE_REPLICA_URLS), reads of the
models in DATABASE_REPLICA_READ_MODELS (and the KPI and search queries, through
`read_alias`) go to a healthy replica, round robin, the same one for the whole request.
Everything else, every write, every migration and every read inside `transaction.atomic`
or of a pinned request uses the primary. Without replicas the router returns at once.

Replica health is probed per process and cached for REPLICA_CHECK_INTERVAL_S: a replica
is used only while its WAL receiver streams and it is at most REPLICA_MAX_LAG_S behind
the primary's WAL position (replication.py); one that cannot be reached, or whose
connection failed under a request, is skipped for REPLICA_RETRY_AFTER_S. A read-only
request whose replica fails for a connection reason is run again on the primary, once
(db_middleware.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from prometheus_client import Counter, Gauge

from apm_platform import db_routing, replication

logger = logging.getLogger(__name__)

READS = Counter("apm_db_reads_total", "Requests' reads routed, by database alias.", ["database"])
RETRIES = Counter(
    "apm_db_read_retries_total",
    "Read-only requests run again on the primary after their replica failed.",
    ["database"],
)
REPLICA_LAG = Gauge(
    "apm_db_replica_lag_seconds", "Staleness of a replica at its last check.", ["database"],
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
    receiver: str | None = None  # its WAL receiver's status: "streaming" when connected
    lag_s: float | None = None
    checked_at: float = 0.0
    retry_at: float = 0.0
    error: str = ""

    @property
    def usable(self) -> bool:
        return (
            self.reachable
            and self.in_recovery
            and self.receiver == "streaming"
            and self.lag_s is not None
            and self.lag_s <= settings.REPLICA_MAX_LAG_S
        )


_status: dict[str, ReplicaStatus] = {}
_primary = replication.PrimaryHistory()
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
            state = replication.standby_state(cursor)
    except DatabaseError as exc:
        _unreachable(status, now, exc)
        return _published(status)
    status.reachable, status.in_recovery, status.receiver = True, state.in_recovery, state.receiver
    if state.replayed is not None:
        status.lag_s = _primary.staleness_s(state.replayed, now)
    _sample_primary()
    if not status.in_recovery:
        logger.error("replica %s is not in recovery (a primary?): not used for reads", alias)
    elif status.receiver != "streaming":
        logger.warning("replica %s: WAL receiver %s: not used for reads", alias, status.receiver)
    return _published(status)


def _sample_primary() -> None:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            _primary.observe(replication.primary_position(cursor))
    except DatabaseError as exc:  # replicas are then judged by their receiver alone
        logger.warning("cannot sample the primary's WAL position: %s", _first_line(exc))


def _unreachable(status: ReplicaStatus, now: float, exc: Exception) -> None:
    connections[status.alias].close()
    status.retry_at = now + settings.REPLICA_RETRY_AFTER_S
    status.error = _first_line(exc)
    logger.warning("replica %s unreachable, retry in %ss: %s", status.alias,
                   settings.REPLICA_RETRY_AFTER_S, status.error)  # fmt: skip


def _published(status: ReplicaStatus) -> ReplicaStatus:
    REPLICA_UP.labels(status.alias).set(1 if status.usable else 0)
    if status.lag_s is not None:
        REPLICA_LAG.labels(status.alias).set(status.lag_s)
    return status


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def mark_unreachable(alias: str, reason: str = "a query failed") -> None:
    """A query on this replica failed: stop using it until its retry time."""
    if alias in settings.DATABASE_REPLICAS:
        connections[alias].close()
        now = time.monotonic()
        _status[alias] = _published(ReplicaStatus(
            alias, checked_at=now, retry_at=now + settings.REPLICA_RETRY_AFTER_S, error=reason
        ))  # fmt: skip


def read_alias() -> str:
    """The database this request reads replicated data from (one per request)."""
    routing = db_routing.current()
    if routing.read_alias is not None and not routing.pinned:
        return routing.read_alias
    alias = _choose(routing)
    if db_routing.in_request() and not connections[DEFAULT_DB_ALIAS].in_atomic_block:
        routing.read_alias = alias
    READS.labels(alias).inc()
    return alias


def _choose(routing: db_routing.Routing) -> str:
    replicas = settings.DATABASE_REPLICAS
    if not replicas or routing.pinned or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    start = next(_round_robin)
    for offset in range(len(replicas)):
        alias = replicas[(start + offset) % len(replicas)]
        if replica_status(alias).usable:
            return alias
    return DEFAULT_DB_ALIAS


def forget_status() -> None:
    """For tests: probe every replica afresh."""
    _status.clear()
    _primary.clear()


class PrimaryReplicaRouter:
    def db_for_read(self, model, **hints):
        # getattr: the database cache's stand-in model has a _meta without a label.
        if getattr(model._meta, "label", None) in settings.DATABASE_REPLICA_READ_MODELS:
            return read_alias()
        return DEFAULT_DB_ALIAS

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        # Replicas hold the same data as the primary.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS
