"""Acknowledged events survive a killed worker and a database outage, stored once.

Real processes: gunicorn with two workers serving the app, a scratch PostgreSQL that
the test stops and starts, and an HTTP client that streams batches and retries what
was not acknowledged, as an ingest client should.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from apm_platform.processes import Gunicorn, manage, scratch_postgres

pytestmark = pytest.mark.slow
BATCH = 1000


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    with scratch_postgres(tmp_path_factory.mktemp("reliability")) as server:
        yield server


@pytest.fixture
def server(database, tmp_path):
    with psycopg.connect(database.url(), autocommit=True) as conn:
        conn.execute("TRUNCATE api_request")
    # Persistent connections, as in production: a restarted database must be handled.
    gunicorn = Gunicorn(database.url(), tmp_path / "metrics", DATABASE_CONN_MAX_AGE="60")
    yield gunicorn
    stderr = gunicorn.stop()
    assert "Traceback" not in stderr, stderr[-3000:]


@pytest.fixture
def key(database):
    return manage(database.url(), "create_api_key", "--project", f"p{uuid.uuid4().hex[:6]}").strip()


def new_batch() -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": str(uuid.uuid4()),
            "time": (now - timedelta(milliseconds=n)).isoformat(),
            "service": "checkout",
            "endpoint": "/cart",
            "method": "GET",
            "status_code": 200,
            "latency_ms": 10.0 + n % 50,
        }
        for n in range(BATCH)
    ]


class Streamer:
    """Sends batches until stopped, retrying each one until it is acknowledged."""

    def __init__(self, url: str, key: str):
        self.url, self.key = f"{url}/api/v1/ingest/", key
        self.acknowledged: set[str] = set()
        self.statuses: list[int] = []
        self.transport_errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.key}"}, timeout=30) as client:
            while not self.stop.is_set():
                self.deliver(client, new_batch())

    def deliver(self, client: httpx.Client, batch: list[dict]) -> None:
        while True:
            try:
                response = client.post(self.url, json=batch)
            except httpx.TransportError:  # the worker died with our request
                with self.lock:
                    self.transport_errors += 1
                time.sleep(0.05)
                continue
            with self.lock:
                self.statuses.append(response.status_code)
            if response.status_code == 200:
                with self.lock:
                    self.acknowledged.update(event["event_id"] for event in batch)
                return
            time.sleep(min(float(response.headers.get("Retry-After", "0.1")), 0.2))


def stored_event_ids(database) -> list[str]:
    with psycopg.connect(database.url()) as conn:
        return [str(row[0]) for row in conn.execute("SELECT event_id FROM api_request")]


def run_streamers(streamers: list[Streamer], during) -> None:
    threads = [threading.Thread(target=s.run) for s in streamers]
    for thread in threads:
        thread.start()
    try:
        during()
    finally:
        for streamer in streamers:
            streamer.stop.set()
        for thread in threads:
            thread.join(timeout=120)


def wait_for_acks(streamers: list[Streamer], count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(s.acknowledged) for s in streamers) < count:
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)


def test_sigkill_of_a_worker_mid_stream_loses_and_duplicates_nothing(server, database, key):
    streamers = [Streamer(server.url, key) for _ in range(2)]

    def kill_workers_mid_stream():
        for _ in range(3):
            wait_for_acks(streamers, sum(len(s.acknowledged) for s in streamers) + 5 * BATCH)
            os.kill(server.worker_pids()[0], signal.SIGKILL)
        wait_for_acks(streamers, sum(len(s.acknowledged) for s in streamers) + 5 * BATCH)

    run_streamers(streamers, kill_workers_mid_stream)

    # Two streamers keep both workers busy, so the kills cut requests in flight.
    assert sum(s.transport_errors for s in streamers) >= 1, "no request was interrupted"
    acknowledged = set().union(*(s.acknowledged for s in streamers))
    stored = stored_event_ids(database)
    assert len(stored) == len(set(stored)), "an event was stored twice"
    assert acknowledged <= set(stored), "an acknowledged event was lost"
    assert all(status == 200 for s in streamers for status in s.statuses)


def test_database_outage_gives_503_and_loses_no_acknowledged_event(server, database, key):
    streamers = [Streamer(server.url, key)]

    def outage():
        wait_for_acks(streamers, 5 * BATCH)
        database.stop()
        time.sleep(2)
        database.start()
        wait_for_acks(streamers, len(streamers[0].acknowledged) + 5 * BATCH)

    run_streamers(streamers, outage)

    statuses = streamers[0].statuses
    assert 503 in statuses, "the outage was not observed"
    assert set(statuses) <= {200, 429, 503}, f"unexpected statuses {set(statuses)}"
    stored = stored_event_ids(database)
    assert len(stored) == len(set(stored))
    assert streamers[0].acknowledged <= set(stored)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "apm_db_errors_total" in metrics
