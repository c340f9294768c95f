"""The primary/replica router on a real streaming replica of the test database.

A second embedded PostgreSQL is made a hot standby of the test primary with
`pg_basebackup -R`; these tests check where reads and writes go by what each
connection is (pg_is_in_recovery()) and what it executed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apm_platform import db_router, db_routing
from apm_platform.processes import free_port
from observability.models import ApiRequest, Project
from observability.tests.utils import (
    client_with,
    event_payload,
    make_key,
    make_project,
    make_request,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "replica1"]),
]
REPLICA = "replica1"


@pytest.fixture(scope="module")
def replica(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.conf import settings

    primary = settings.EMBEDDED_DATABASE
    if primary is None:
        pytest.skip("needs the embedded primary (it accepts replication from loopback)")
    standby = primary.create_replica(tmp_path_factory.mktemp("replica") / "pg", free_port())
    standby.start()
    yield standby
    standby.stop()


@pytest.fixture
def routed(replica, settings):
    """Point `replica1` (a test mirror of the primary) at the standby and route to it, as
    DATABASE_REPLICA_URLS would."""
    point_alias_at(replica.port)
    settings.DATABASE_REPLICAS = [REPLICA]
    settings.REPLICA_CHECK_INTERVAL_S = 0  # probe on every read: deterministic tests
    db_router.forget_status()
    yield replica
    point_alias_at(connections[DEFAULT_DB_ALIAS].settings_dict["PORT"])
    db_router.forget_status()


def point_alias_at(port) -> None:
    connection = connections[REPLICA]
    connection.close()
    connection.settings_dict.update(PORT=port, OPTIONS={"connect_timeout": 2})


def in_recovery(alias: str) -> bool:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return cursor.fetchone()[0]


def wait_replayed(timeout: float = 30) -> None:
    """Until the replica has replayed everything the primary has written so far."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        target = cursor.fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise TimeoutError("the replica did not catch up")


@pytest.fixture
def project():
    return make_project(f"router-{uuid.uuid4().hex[:8]}")


def test_without_replicas_everything_uses_the_primary(project):
    assert ApiRequest.objects.all().db == DEFAULT_DB_ALIAS
    assert db_router.read_alias() == DEFAULT_DB_ALIAS


def forget_writes(project) -> None:
    """As if the project's last write were older than the read-after-write TTL."""
    Project.objects.filter(pk=project.pk).update(last_write_at=None)


def test_reads_go_to_the_replica_and_writes_to_the_primary(routed, project):
    key = make_key(project)
    assert (
        client_with(key).post("/api/v1/ingest/", [event_payload()], format="json").status_code
        == 200
    )
    other_key = make_key(project, name="reader")
    forget_writes(project)
    wait_replayed()

    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        response = client_with(other_key).get("/api/v1/requests/")

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    assert any("api_request" in q["sql"] for q in on_replica.captured_queries)
    assert in_recovery(REPLICA) and not in_recovery(DEFAULT_DB_ALIAS)
    assert ApiRequest.objects.db_manager(DEFAULT_DB_ALIAS).filter(project=project).count() == 1


def test_reads_inside_a_transaction_use_the_primary(routed, project):
    with transaction.atomic():
        assert ApiRequest.objects.all().db == DEFAULT_DB_ALIAS
    assert ApiRequest.objects.all().db == REPLICA


def test_every_key_of_a_project_reads_its_writes_while_the_replica_lags(routed, project, settings):
    settings.REPLICA_MAX_LAG_S = 3600  # the replica stays "healthy": only pinning protects
    ingest_key = make_key(project, scopes=["ingest"])
    dashboard_key = make_key(project, scopes=["read"], name="dashboard")
    wait_replayed()
    pause_replay()
    try:
        event = event_payload()
        response = client_with(ingest_key).post("/api/v1/ingest/", [event], format="json")
        assert response.status_code == 200

        with CaptureQueriesContext(connections[REPLICA]) as on_replica:
            seen = client_with(dashboard_key).get("/api/v1/requests/").json()["results"]
    finally:
        resume_replay()

    assert [row["event_id"] for row in seen] == [event["event_id"]]  # read-after-write
    assert not on_replica.captured_queries  # pinned to the primary, although another key


def test_the_pin_expires_after_the_ttl(routed, project, settings):
    key = make_key(project)
    Project.objects.filter(pk=project.pk).update(
        last_write_at=timezone.now() - timedelta(seconds=settings.READ_AFTER_WRITE_TTL + 1)
    )
    wait_replayed()

    with CaptureQueriesContext(connections[REPLICA]) as on_replica:
        client_with(key).get("/api/v1/requests/")

    assert on_replica.captured_queries


def test_a_lagging_replica_is_skipped(routed, project, settings):
    settings.REPLICA_MAX_LAG_S = 0.5
    pause_replay()
    try:
        make_key(project)  # a write the paused replica has received but not replayed
        deadline = time.monotonic() + 30
        while db_router.replica_status(REPLICA).lag_s <= 0.5:
            assert time.monotonic() < deadline, "lag never built up"
            time.sleep(0.1)

        assert db_router.read_alias() == DEFAULT_DB_ALIAS
        assert db_router.replica_status(REPLICA).lag_s > 0.5
    finally:
        resume_replay()
    wait_replayed()
    assert db_router.read_alias() == REPLICA


def test_a_stopped_replica_is_skipped_without_an_error(routed, project, settings):
    key = make_key(project)
    routed.stop()
    try:
        response = client_with(key).get("/api/v1/requests/")
        kpis = client_with(key).get("/api/v1/kpis/")

        assert response.status_code == 200
        assert kpis.status_code == 200
        status = db_router.replica_status(REPLICA)
        assert not status.reachable and status.error
        ready = client_with(None).get("/readyz").json()
        assert ready["status"] == "ok"
        assert ready["replicas"][REPLICA]["usable"] is False
    finally:
        routed.start()


def test_readyz_and_metrics_show_the_replica(routed, project):
    wait_replayed()
    client_with(make_key(project)).get("/api/v1/requests/")
    db_router.forget_status()

    ready = client_with(None).get("/readyz").json()
    metrics = client_with(None).get("/metrics").content.decode()

    assert ready["replicas"][REPLICA]["usable"] is True
    assert ready["replicas"][REPLICA]["in_recovery"] is True
    assert 'apm_db_reads_total{database="default"}' in metrics
    assert f'apm_db_replica_up{{database="{REPLICA}"}} 1.0' in metrics


def test_check_cluster_dbs_reports_roles(routed):
    out = StringIO()
    call_command("check_cluster_dbs", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0].startswith("default (") and ": primary" in lines[0]
    assert lines[1].startswith(f"{REPLICA} (") and ": standby" in lines[1]
    assert "vector" in lines[0]


def test_check_cluster_dbs_fails_when_a_replica_is_a_primary(settings):
    settings.DATABASE_REPLICAS = [REPLICA]  # still the mirror: it points at the primary
    out = StringIO()

    with pytest.raises(CommandError, match=f"{REPLICA} is configured as standby but is a primary"):
        call_command("check_cluster_dbs", "--json", stdout=out)

    assert '"role": "primary"' in out.getvalue()


def pause_replay() -> None:
    with connections[REPLICA].cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_pause()")


def resume_replay() -> None:
    with connections[REPLICA].cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_resume()")


# --- Failures: a replica that dies, stops answering, or is cut off its primary -----------

IPTABLES = shutil.which("iptables") or "/usr/sbin/iptables"


@pytest.fixture
def trusted_replica(routed, settings):
    """The router trusts its last probe for the whole test, as it does between probes: a
    failure can only be noticed by the request that meets it."""
    settings.REPLICA_CHECK_INTERVAL_S = 3600
    wait_replayed()
    assert db_router.read_alias() == REPLICA  # probed: usable, and connected
    return routed


def reader(project) -> str:
    key = make_key(project, scopes=["read"], name=f"reader-{uuid.uuid4().hex[:6]}")
    forget_writes(project)
    return key


def test_a_replica_that_dies_is_retried_on_the_primary_in_the_same_request(
    trusted_replica, project, client
):
    key = reader(project)
    make_request(project)
    forget_writes(project)
    in_recovery(REPLICA)  # the connection the request will use is open
    trusted_replica.stop()
    try:
        response = client_with(key).get("/api/v1/requests/")
        kpis = client_with(key).get("/api/v1/kpis/")

        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == 1  # the primary answered
        assert kpis.status_code == 200
        status = db_router.replica_status(REPLICA)
        assert not status.reachable and "failed" in status.error
        metrics = client.get("/metrics").content.decode()
        assert f'apm_db_read_retries_total{{database="{REPLICA}"}} 1.0' in metrics
    finally:
        trusted_replica.start()


@pytest.mark.skipif(not Path(IPTABLES).exists(), reason="needs iptables (.ci/run installs it)")
def test_a_replica_that_stops_answering_does_not_hold_the_request(trusted_replica, project):
    """Packets to and from the replica are dropped (as when its host dies or the network
    splits): the TCP keepalives and tcp_user_timeout end the wait, the request is served
    by the primary."""
    connections[REPLICA].close()
    connections[REPLICA].settings_dict["OPTIONS"] = {
        "connect_timeout": 2, "keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1,
        "keepalives_count": 2, "tcp_user_timeout": 3000,
    }  # fmt: skip
    in_recovery(REPLICA)  # connected, with those options
    key = reader(project)
    port = str(trusted_replica.port)
    rules = [["OUTPUT", "-p", "tcp", "--dport", port, "-j", "DROP"],
             ["OUTPUT", "-p", "tcp", "--sport", port, "-j", "DROP"]]  # fmt: skip
    for rule in rules:
        subprocess.run([IPTABLES, "-I", *rule], check=True)
    try:
        started = time.monotonic()
        response = client_with(key).get("/api/v1/kpis/")
        elapsed = time.monotonic() - started
    finally:
        for rule in rules:
            subprocess.run([IPTABLES, "-D", *rule], check=True)
    connections[REPLICA].close()

    assert response.status_code == 200, response.content
    assert elapsed < 30, f"the request waited {elapsed:.0f}s for a silent replica"
    assert not db_router.replica_status(REPLICA).reachable


def test_a_replica_cut_off_from_its_primary_is_not_read(routed, project):
    """Its WAL receiver stops, so it has replayed all it received: it must still not count
    as fresh."""
    wait_replayed()
    with connections[REPLICA].cursor() as cursor:
        cursor.execute("SHOW primary_conninfo")
        conninfo = cursor.fetchone()[0]
        cursor.execute("ALTER SYSTEM SET primary_conninfo = ''")
        cursor.execute("SELECT pg_reload_conf()")
    try:
        wait_for(lambda: db_router.replica_status(REPLICA).receiver is None)
        make_request(project)  # the primary moves on; the replica does not

        assert db_router.read_alias() == DEFAULT_DB_ALIAS
        ready = client_with(None).get("/readyz").json()["replicas"][REPLICA]
        assert ready["usable"] is False and ready["wal_receiver"] is None
    finally:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("ALTER SYSTEM SET primary_conninfo = %s", [conninfo])
            cursor.execute("SELECT pg_reload_conf()")
    wait_for(lambda: db_router.replica_status(REPLICA).receiver == "streaming")
    wait_replayed()
    assert db_router.read_alias() == REPLICA


def test_one_request_reads_one_database(routed, project, settings):
    """The choice is made once per request: two replicas that lag differently would
    otherwise give one answer from two points in time."""
    settings.DATABASE_REPLICAS = [REPLICA, DEFAULT_DB_ALIAS]  # round robin over two
    key = reader(project)
    wait_replayed()
    used = []
    with db_routing.request_scope("GET"):
        for _ in range(4):
            used.append(db_router.read_alias())

    assert len(set(used)) == 1
    assert client_with(key).get("/api/v1/search/", {"q": "cart"}).status_code == 200


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
