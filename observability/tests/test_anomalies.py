"""Anomalies (observability/anomalies/, /api/v1/anomalies/): synthetic traffic of a known
shape, four weeks of seasonal history written with the project's COPY writer and rolled
up by jobs.refresh, the current traffic sent through the real ingest API, and a clock
the tests set (`at`)."""

from __future__ import annotations

import dataclasses
import math
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from observability import jobs
from observability.analytics import refresh
from observability.analytics.rollups import HOUR, hour_floor
from observability.anomalies import detector, evaluate
from observability.anomalies.baseline import ERROR_RATE, LATENCY, TRAFFIC, WEEK, WEEKS
from observability.ingest.writer import copy_rows, jsonb_value
from observability.tests.utils import client_with, make_key, make_project

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/v1/anomalies/"
MINUTE = timedelta(minutes=1)


@dataclasses.dataclass(frozen=True)
class Shape:
    """An endpoint's traffic: requests per minute on a day/night and weekday/weekend
    cycle, log-normal latencies, a share of 5xx answers."""

    service: str
    endpoint: str
    peak_per_minute: float
    median_ms: float
    sigma: float = 0.5
    error_rate: float = 0.01

    def rate(self, minute: datetime) -> float:
        hour = minute.hour + minute.minute / 60
        daily = 0.3 + 0.7 * math.sin(math.pi * ((hour - 3) % 24) / 24) ** 2
        weekly = 0.6 if minute.weekday() >= 5 else 1.0
        return self.peak_per_minute * daily * weekly


CART = Shape("checkout", "/cart", 60, 50)
PAY = Shape("checkout", "/pay", 40, 200, sigma=0.9, error_rate=0.03)
HEALTH = Shape("ops", "/health", 2, 3)


def traffic(shape: Shape, start: datetime, end: datetime, seed: int, *, slowdown: float = 1.0,
            error_rate: float | None = None, rate_factor: float = 1.0):  # fmt: skip
    """(time, status, latency_ms) of each request of [start, end), minute by minute."""
    rng = np.random.default_rng(seed)
    rate = error_rate if error_rate is not None else shape.error_rate
    minute = start
    while minute < end:
        count = rng.poisson(shape.rate(minute) * rate_factor)
        seconds = np.sort(rng.uniform(0, 60, count))
        latency = rng.lognormal(math.log(shape.median_ms), shape.sigma, count) * slowdown
        failed = rng.random(count) < rate
        for second, ms, bad in zip(seconds, latency.tolist(), failed.tolist(), strict=True):
            yield minute + timedelta(seconds=float(second)), 503 if bad else 200, round(ms, 3)
        minute += MINUTE


def write(project, shape: Shape, start: datetime, end: datetime, seed: int, **changes) -> int:
    """Store the traffic with the project's COPY writer (for history: ingest accepts
    nothing older than raw retention, and four weeks through HTTP would be slow)."""
    attributes = jsonb_value(b"{}")
    rows = [
        (time, project.pk, shape.service, shape.endpoint, "GET", status, latency, uuid.uuid4(),
         "", "", "production", "", "", None, None, attributes, 300.0, None)
        for time, status, latency in traffic(shape, start, end, seed, **changes)
    ]  # fmt: skip
    return copy_rows(connection, rows)


def history(project, shapes, hours: list[datetime], seed: int = 1) -> None:
    """The same hours of the week in the WEEKS weeks before, rolled up as run_jobs does."""
    for n, shape in enumerate(shapes):
        for week in range(1, WEEKS + 1):
            for hour in hours:
                start = hour - week * WEEK
                write(project, shape, start, start + timedelta(hours=1), seed + 100 * n + week)
    jobs.refresh(HOUR)
    assert refresh.watermarks(connection)[HOUR] > max(hours) - WEEK  # rollups, not raw


def send(ingest, shape: Shape, start: datetime, end: datetime, seed: int, **changes) -> int:
    """The current traffic, through POST /api/v1/ingest/."""
    events = [
        {"time": time.isoformat(), "service": shape.service, "endpoint": shape.endpoint,
         "method": "GET", "status_code": status, "latency_ms": latency}
        for time, status, latency in traffic(shape, start, end, seed, **changes)
    ]  # fmt: skip
    for first in range(0, len(events), 10_000):
        response = ingest(events[first : first + 10_000])
        assert response.status_code in (200, 202), response.json()
    return len(events)


@pytest.fixture
def project(isolated_project):
    return isolated_project


@pytest.fixture
def api(isolated_api):
    return isolated_api


@pytest.fixture
def clock():
    """The tests' "now": a weekday afternoon minute a day ago (within raw retention, so
    ingest accepts it, and four weeks of history still within the first refresh)."""
    today = datetime.now(UTC).replace(hour=15, minute=30, second=0, microsecond=0)
    moment = today - timedelta(days=1)
    while moment.weekday() >= 5:
        moment -= timedelta(days=1)
    return moment


def by_key(findings):
    return {(f.service, f.endpoint, f.signal): f for f in findings}


def test_a_3x_p95_spike_fires_within_two_evaluation_minutes(project, ingest, clock):
    spike = clock
    history(project, [CART], [hour_floor(spike)])
    send(ingest, CART, spike - timedelta(minutes=30), spike, seed=7)
    send(ingest, CART, spike, spike + timedelta(minutes=10), seed=8, slowdown=3.0)
    send(ingest, CART, spike + timedelta(minutes=10), spike + timedelta(minutes=20), seed=9)

    firing = {}
    for minute in range(-20, 20):
        at = spike + minute * MINUTE
        findings = by_key(evaluate(project, at))
        assert set(findings) == {("checkout", "/cart", s) for s in (LATENCY, ERROR_RATE, TRAFFIC)}
        firing[minute] = {key[2] for key, finding in findings.items() if finding.firing}

    # Evaluated at spike + 2 min, the two closed minutes are both spiked: firing.
    assert firing[2] == {LATENCY}
    assert all(firing[m] == set() for m in range(-20, 2))
    assert all(firing[m] == {LATENCY} for m in range(2, 11))
    assert all(firing[m] == set() for m in range(13, 20))
    latency = by_key(evaluate(project, spike + 5 * MINUTE))["checkout", "/cart", LATENCY]
    assert latency.observed > 2.5 * latency.baseline.median
    assert latency.threshold == pytest.approx(detector.LATENCY_RATIO * latency.baseline.median)
    assert len(latency.baseline.weeks) == WEEKS
    assert [m.start for m in latency.minutes] == [spike + 3 * MINUTE, spike + 4 * MINUTE]
    assert latency.requests >= detector.MIN_REQUESTS
    assert latency.key == "latency_p95:checkout:/cart"


def test_run_jobs_alerts_on_an_anomaly_once_and_resolves_it(project, ingest, clock):
    """The alerts job: a finding fires an anomaly alert (a minute late: the late-data
    allowance), which stays one alert while it lasts and resolves after."""
    from observability.alerting.models import Alert, AlertEvent

    spike = clock
    history(project, [CART], [hour_floor(spike)])
    send(ingest, CART, spike - timedelta(minutes=30), spike, seed=7)
    send(ingest, CART, spike, spike + timedelta(minutes=10), seed=8, slowdown=3.0)
    send(ingest, CART, spike + timedelta(minutes=10), spike + timedelta(minutes=20), seed=9)

    states = {}
    for minute in range(0, 18):
        jobs.evaluate_alerts(spike + minute * MINUTE)
        alert = Alert.objects.filter(project=project, kind=Alert.Kind.ANOMALY,
                                     key="latency_p95:checkout:/cart").first()  # fmt: skip
        states[minute] = alert.state if alert else None

    assert states[2] in (None, Alert.State.OK) and states[3] == Alert.State.FIRING
    assert all(states[m] == Alert.State.FIRING for m in range(3, 12))
    assert states[17] == Alert.State.RESOLVED
    events = AlertEvent.objects.filter(project=project, alert__kind=Alert.Kind.ANOMALY)
    assert [e.state for e in events.order_by("at")] == ["firing", "resolved"]
    fired = events.order_by("at").first()
    assert fired.payload["signal"] == LATENCY and fired.payload["observed"] > fired.payload[
        "baseline_median"
    ]
    assert "checkout /cart: latency p95" in fired.summary


def test_an_error_burst_and_an_outage_fire_their_signals(project, ingest, clock):
    start = clock
    history(project, [CART, PAY], [hour_floor(start)])
    send(ingest, CART, start - timedelta(minutes=10), start, seed=11)
    send(ingest, CART, start, start + timedelta(minutes=5), seed=12, error_rate=0.3)
    send(ingest, PAY, start - timedelta(minutes=10), start, seed=13)  # then nothing

    before = by_key(evaluate(project, start))
    soon = by_key(evaluate(project, start + 2 * MINUTE))
    later = by_key(evaluate(project, start + 4 * MINUTE))

    assert not any(finding.firing for finding in before.values())
    # The error burst: within 2 minutes. The outage: once the two evaluated minutes'
    # 3-minute pools hold (almost) no requests, 4 minutes after the last request.
    assert {key for key, finding in soon.items() if finding.firing} == {
        ("checkout", "/cart", ERROR_RATE)
    }
    assert {key for key, finding in later.items() if finding.firing} == {
        ("checkout", "/cart", ERROR_RATE), ("checkout", "/pay", TRAFFIC)
    }  # fmt: skip
    outage = later["checkout", "/pay", TRAFFIC]
    assert outage.observed == 0 and outage.requests == 0
    assert outage.threshold == pytest.approx(detector.TRAFFIC_DROP_RATIO * outage.baseline.median)
    assert outage.baseline.median > detector.MIN_BASELINE_PER_MINUTE
    # Without requests there is no latency or error rate to judge.
    assert later["checkout", "/pay", LATENCY].observed is None
    assert not later["checkout", "/pay", LATENCY].firing


def test_one_odd_week_does_not_move_the_baseline(project, ingest, clock):
    """Two weeks ago the same hour had an incident (3x slower, 30 % errors): the median
    and MAD of the four weeks ignore it, and today's normal traffic raises nothing."""
    hour = hour_floor(clock)
    for week in range(1, WEEKS + 1):
        incident = {"slowdown": 3.0, "error_rate": 0.3} if week == 2 else {}
        start = hour - week * WEEK
        write(project, CART, start, start + timedelta(hours=1), seed=50 + week, **incident)
    jobs.refresh(HOUR)
    send(ingest, CART, clock - timedelta(minutes=10), clock + timedelta(minutes=5), seed=59)

    findings = by_key(evaluate(project, clock + 5 * MINUTE))

    assert not any(finding.firing for finding in findings.values())
    latency = findings["checkout", "/cart", LATENCY].baseline
    normal = [p95 for week, p95 in enumerate(latency.weeks, 1) if week != 2]
    assert latency.weeks[1] > 2.5 * max(normal)  # the incident is in the weeks...
    assert min(normal) <= latency.median <= max(normal)  # ...not in the median
    assert latency.mad < 0.1 * latency.median
    errors = findings["checkout", "/cart", ERROR_RATE].baseline
    assert errors.weeks[1] > 0.2 and errors.median < 0.05


def test_too_few_requests_never_breach_latency_or_errors(project, ingest, clock):
    """A quiet endpoint has a latency and error-rate baseline but fewer than MIN_REQUESTS
    requests in 3 minutes: ten times slower and failing, it still does not fire (and
    its traffic is below the minimum baseline volume for a traffic drop)."""
    quiet = Shape("ops", "/health", 3, 3)
    history(project, [quiet], [hour_floor(clock)])
    send(ingest, quiet, clock - timedelta(minutes=10), clock + timedelta(minutes=10), seed=21,
         slowdown=10.0, error_rate=1.0)  # fmt: skip

    findings = by_key(evaluate(project, clock + 5 * MINUTE))

    assert set(findings) == {("ops", "/health", LATENCY), ("ops", "/health", ERROR_RATE),
                             ("ops", "/health", TRAFFIC)}  # fmt: skip
    for finding in findings.values():
        assert not finding.firing
        assert 0 < finding.requests < detector.MIN_REQUESTS
    assert findings["ops", "/health", LATENCY].observed > 5 * findings[
        "ops", "/health", LATENCY].baseline.median  # fmt: skip
    assert findings["ops", "/health", TRAFFIC].baseline.median < detector.MIN_BASELINE_PER_MINUTE


def test_projects_do_not_see_each_others_traffic_or_baselines(project, ingest, clock):
    other = make_project(f"other-{uuid.uuid4().hex[:8]}")
    history(project, [CART], [hour_floor(clock)])
    # The other project: the same endpoint, no history of its own, and a spike now.
    write(other, CART, clock - timedelta(minutes=10), clock + timedelta(minutes=5), seed=31,
          slowdown=5.0, error_rate=0.5)  # fmt: skip
    send(ingest, CART, clock - timedelta(minutes=10), clock + timedelta(minutes=5), seed=32)

    mine = evaluate(project, clock + 3 * MINUTE)
    theirs = evaluate(other, clock + 3 * MINUTE)

    assert {(f.endpoint, f.signal) for f in mine} == {
        ("/cart", s) for s in (LATENCY, ERROR_RATE, TRAFFIC)
    }
    assert not any(f.firing for f in mine)
    assert theirs == []  # no baseline of its own: nothing to judge
    other_api = client_with(make_key(other))
    assert other_api.get(URL, {"at": (clock + 3 * MINUTE).isoformat()}).json()["results"] == []


def test_the_api_lists_findings_with_their_baseline_and_filters(project, api, ingest, clock):
    history(project, [CART, PAY], [hour_floor(clock)])
    send(ingest, CART, clock - timedelta(minutes=10), clock + timedelta(minutes=5), seed=41,
         slowdown=3.0)  # fmt: skip
    send(ingest, PAY, clock - timedelta(minutes=10), clock + timedelta(minutes=5), seed=42)
    at = (clock + 2 * MINUTE).isoformat()

    answer = api.get(URL, {"at": at})
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert len(body["results"]) == 6
    latency = next(r for r in body["results"] if r["key"] == "latency_p95:checkout:/cart")
    assert latency["firing"] is True
    assert set(latency) == {"key", "service", "endpoint", "signal", "at", "firing", "observed",
                            "threshold", "baseline", "requests", "minutes"}  # fmt: skip
    assert set(latency["baseline"]) == {"median", "mad", "weeks"}
    assert latency["observed"] > latency["threshold"] > latency["baseline"]["median"]
    assert [m["breaching"] for m in latency["minutes"]] == [True, True]
    assert latency["minutes"][-1]["start"] == (clock + MINUTE).isoformat().replace("+00:00", "Z")

    only = api.get(URL, {"at": at, "signal": LATENCY, "endpoint": "/pay"}).json()["results"]
    assert [(r["endpoint"], r["signal"], r["firing"]) for r in only] == [("/pay", LATENCY, False)]
    assert api.get(URL, {"at": at, "service": "nope"}).json()["results"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"at": "yesterday"}, "at"),
        ({"at": ""}, "at"),
        ({"at": "99999-01-01T00:00:00Z"}, "at"),
        ({"signal": "latency"}, "signal"),
        ({"service": ""}, "service"),
        ({"endpoint": "/a\x00b"}, "endpoint"),
        ({"service": "s" * 129}, "service"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(api, query, field):
    answer = api.get(URL, query)

    assert answer.status_code == 400
    assert list(answer.json()["errors"]) == [field]


def test_the_read_scope_is_needed(project):
    answer = client_with(make_key(project, scopes=["ingest"])).get(URL)

    assert answer.status_code == 403


def judgeable(signal: str, minute: detector.Minute) -> bool:
    """Whether a minute could have breached: a baseline, and enough requests for a
    latency or an error rate (a traffic drop is judged on any count)."""
    enough = signal == TRAFFIC or minute.requests >= detector.MIN_REQUESTS
    return minute.threshold is not None and enough


def test_a_normal_week_of_seasonal_traffic_raises_no_anomaly(project, ingest, clock):
    """Four weeks of history, then a fifth like them (other random draws) through ingest,
    evaluated every second minute: with K = 2 every minute of the week is judged once."""
    shapes = [
        dataclasses.replace(CART, peak_per_minute=30),
        dataclasses.replace(PAY, peak_per_minute=20),
        dataclasses.replace(HEALTH, peak_per_minute=3),
    ]
    week_start = hour_floor(clock) - WEEK
    for n, shape in enumerate(shapes):
        for week in range(1, WEEKS + 1):
            write(project, shape, week_start - week * WEEK, week_start - (week - 1) * WEEK,
                  seed=1000 * n + week)  # fmt: skip
        send(ingest, shape, week_start, hour_floor(clock), seed=1000 * n)
    jobs.refresh(HOUR)
    jobs.refresh(HOUR, week_start - WEEKS * WEEK, week_start)  # past raw retention too

    judged, fired = 0, []
    for step in range(2, int(WEEK / MINUTE), detector.K):
        findings = evaluate(project, week_start + step * MINUTE)
        judged += sum(1 for f in findings for m in f.minutes if judgeable(f.signal, m))
        fired += [(f.key, f.at) for f in findings if f.firing]

    assert fired == []
    # The two busy endpoints were judged on their three signals most of the week (at
    # night and on the quiet endpoint only where there is enough traffic).
    assert judged > 2 * 3 * int(WEEK / MINUTE) * 0.7
