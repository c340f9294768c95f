"""The multi-window, multi-burn-rate rules on synthetic traffic of known shape, sent
through the real ingest API, evaluated at minutes the tests choose (run_alerts(at)).

A rule over a long window L with factor F, on traffic that starts burning at rate B
after a clean history, fires once the long window has burnt F on average: after
L * F / B. So a burn of exactly 14.4x pages after one hour, and a burn of 200x (20 % of
requests failing against a 99.9 % target) within five minutes (docs/ALERTING.md).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from observability.alerting import slos
from observability.alerting.models import Alert, AlertEvent, Slo
from observability.analytics.rollups import hour_floor
from observability.tests.traffic import send, steady

pytestmark = pytest.mark.django_db(transaction=True)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def refresh():
    call_command("refresh_apirequest_hourly", verbosity=0)
    call_command("refresh_apirequest_daily", verbosity=0)


def make_slo(project, target) -> Slo:
    return Slo.objects.create(project=project, name="pay", service="checkout",
                              objective="availability", target=target, window_days=30)  # fmt: skip


def first_firing(project, kind: str) -> datetime | None:
    event = (AlertEvent.objects.filter(project=project, alert__kind=kind, state="firing")
             .order_by("at").first())  # fmt: skip
    return event.at if event else None


def evaluate(project, moments) -> None:
    for at in moments:
        slos.run_alerts(project.pk, at)


def fires_first_at(project, kind: str, quiet, watched) -> datetime | None:
    """Evaluated at the `quiet` minutes, `kind` must not fire; then at the `watched`
    ones: when it fired first."""
    evaluate(project, quiet)
    assert first_firing(project, kind) is None
    evaluate(project, watched)
    return first_firing(project, kind)


def test_a_fast_burn_pages_within_five_minutes(isolated_project, isolated_api):
    project = isolated_project
    start = hour_floor(datetime.now(UTC)) - 3 * HOUR + 17 * MINUTE
    # Seven clean hours: the 6 h window (6x rule) has a whole history to average over.
    clean = steady(start - 7 * HOUR, 7 * HOUR, 30, 0.0)
    outage = steady(start, 15 * MINUTE, 30, 0.20)  # 200x the 0.1 % budget
    send(isolated_api, clean + outage)
    refresh()
    make_slo(project, 99.9)
    evaluate(project, [start + n * MINUTE for n in range(0, 11)])
    fired = first_firing(project, Alert.Kind.SLO_PAGE)
    # 1 h * 14.4 / 200 = 4.3 minutes.
    assert fired == start + 5 * MINUTE
    alert = Alert.objects.get(project=project, kind=Alert.Kind.SLO_PAGE)
    assert alert.state == "firing" and alert.payload["rules"] == ["14.4x over 1h and 5m"]
    # It fired once: evaluations while it keeps firing add no transition.
    assert AlertEvent.objects.filter(alert=alert).count() == 1


def test_a_steady_burn_of_15x_pages_when_its_hour_has_burnt(isolated_project, isolated_api):
    project = isolated_project
    start = hour_floor(datetime.now(UTC)) - 4 * HOUR + 5 * MINUTE
    send(isolated_api, steady(start - 2 * HOUR, 2 * HOUR, 60, 0.0) +
         steady(start, 70 * MINUTE, 60, 0.15))  # fmt: skip
    refresh()
    make_slo(project, 99)
    evaluate(project, [start + n * MINUTE for n in range(50, 66)])
    # 1 h * 14.4 / 15 = 57.6 minutes.
    assert first_firing(project, Alert.Kind.SLO_PAGE) == start + 58 * MINUTE


def test_the_ticket_rule_of_3x_fires_at_its_rate_and_nothing_pages(isolated_project, isolated_api):
    project = isolated_project
    start = hour_floor(datetime.now(UTC)) - 26 * HOUR
    # Three clean days: the 3 d window (1x rule) has a whole history to average over.
    send(isolated_api, steady(start - 3 * DAY, 3 * DAY, 4, 0.0) +
         steady(start, 25 * HOUR, 4, 0.035))  # fmt: skip
    refresh()
    make_slo(project, 99)
    # 1 d * 3 / 3.5 = 20.6 hours; the 2 h window burns 3.5x all along. (The 1x rule
    # reaches its rate at the same time, 3 d * 1 / 3.5: both spend 10 % of the budget.)
    fired = fires_first_at(
        project, Alert.Kind.SLO_TICKET, [start + n * HOUR for n in range(0, 20)],
        [start + 20 * HOUR + n * 5 * MINUTE for n in range(0, 13)],
    )  # fmt: skip
    assert fired is not None and start + 20.5 * HOUR <= fired <= start + 20.75 * HOUR
    alert = Alert.objects.get(project=project, kind=Alert.Kind.SLO_TICKET)
    assert "3x over 1d and 2h" in alert.payload["rules"]
    assert first_firing(project, Alert.Kind.SLO_PAGE) is None


def test_the_ticket_rule_of_1x_fires_at_its_rate(isolated_project, isolated_api):
    project = isolated_project
    start = hour_floor(datetime.now(UTC)) - 64 * HOUR
    send(isolated_api, steady(start - 3 * DAY, 3 * DAY, 2, 0.0) +
         steady(start, 64 * HOUR, 2, 0.0125))  # fmt: skip
    refresh()
    make_slo(project, 99)
    # 3 d * 1 / 1.25 = 57.6 hours; the 6 h window burns 1.25x, the 1 d one never 3x.
    fired = fires_first_at(
        project, Alert.Kind.SLO_TICKET, [start + n * 3 * HOUR for n in range(0, 19)],
        [start + 57 * HOUR + n * 10 * MINUTE for n in range(0, 13)],
    )  # fmt: skip
    assert fired is not None and start + 57.5 * HOUR <= fired <= start + 58 * HOUR
    alert = Alert.objects.get(project=project, kind=Alert.Kind.SLO_TICKET)
    assert alert.payload["rules"] == ["1x over 3d and 6h"]
    assert first_firing(project, Alert.Kind.SLO_PAGE) is None


def test_a_steady_burn_of_0_9x_never_alerts_over_30_days(isolated_project, isolated_api, settings):
    settings.APM_RAW_RETENTION_DAYS = 40  # ingest accepts the simulated month
    project = isolated_project
    start = hour_floor(datetime.now(UTC)) - 31 * DAY
    send(isolated_api, steady(start, 31 * DAY, 1, 0.009))
    refresh()
    make_slo(project, 99)
    # Every 6 hours after the first day, and 100 random minutes (each window's burn rate
    # is the shape's up to one request, so the sampled minutes stand for the others).
    rng = random.Random(5)
    moments = [start + DAY + n * 6 * HOUR for n in range(0, 4 * 30)]
    moments += sorted(start + DAY + rng.randrange(30 * 24 * 60) * MINUTE for _ in range(100))
    evaluate(project, moments)
    assert not AlertEvent.objects.filter(project=project).exists()
    status = slos.evaluate_slos(project.pk, slos.evaluation_minute(start + 31 * DAY))[0]
    assert status.burn_rate("3d") == pytest.approx(0.9, abs=0.02)
    assert status.budget_remaining == pytest.approx(0.1, abs=0.02)
