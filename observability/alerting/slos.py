"""SLO status and the multi-window, multi-burn-rate alerts of the SRE workbook.

A burn rate is the window's bad fraction divided by the error budget (1 - target): 1x
spends exactly the budget over the SLO window. An alert rule fires when both its long
and its short window burn at least its factor (the long one proves the spend is
significant, the short one that it is still happening, so the alert resolves within
minutes of a fix). The rules are data (RULES): page and ticket, two pairs each.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper

from observability.alerting import sli, state
from observability.alerting.models import Alert, Slo, SloStatus
from observability.alerting.sli import Counts, WindowSpec
from observability.analytics.rollups import DAY, HOUR

# The burn-rate windows, shortest first (status, /metrics, rules).
BURN_WINDOWS = {
    "5m": timedelta(minutes=5),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "2h": timedelta(hours=2),
    "6h": timedelta(hours=6),
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
}


@dataclasses.dataclass(frozen=True)
class Rule:
    kind: str  # the alert kind: Alert.Kind.SLO_PAGE or SLO_TICKET
    factor: float
    long: str
    short: str

    @property
    def name(self) -> str:
        return f"{self.factor:g}x over {self.long} and {self.short}"


# The SRE workbook's recommendation for a 30-day SLO (chapter 5, table 5-8): 14.4x for
# 1 h spends 2 % of the budget, 6x for 6 h 5 %, 3x for 1 d and 1x for 3 d 10 %.
RULES = (
    Rule(Alert.Kind.SLO_PAGE, 14.4, "1h", "5m"),
    Rule(Alert.Kind.SLO_PAGE, 6.0, "6h", "30m"),
    Rule(Alert.Kind.SLO_TICKET, 3.0, "1d", "2h"),
    Rule(Alert.Kind.SLO_TICKET, 1.0, "3d", "6h"),
)
SEVERITY_KINDS = (Alert.Kind.SLO_PAGE, Alert.Kind.SLO_TICKET)


def window_label(days: int) -> str:
    return f"{days}d"


def _specs(slo_windows: set[int]) -> list[WindowSpec]:
    specs = [WindowSpec(label, length, HOUR) for label, length in BURN_WINDOWS.items()]
    specs += [WindowSpec(window_label(days), timedelta(days=days), DAY)
              for days in sorted(slo_windows)]  # fmt: skip
    return specs


def evaluation_minute(at: datetime | None = None) -> datetime:
    """Evaluations run at whole minutes (window boundaries are then minute-aligned)."""
    return (at or datetime.now(UTC)).astimezone(UTC).replace(second=0, microsecond=0)


@dataclasses.dataclass
class Evaluation:
    slo: Slo
    window: Counts  # over the SLO's window
    burn: dict[str, Counts]
    at: datetime

    def burn_rate(self, label: str) -> float:
        counts = self.burn[label]
        return (counts.bad / counts.total / self.slo.error_budget) if counts.total else 0.0

    def burn_rates(self) -> dict[str, float]:
        return {label: self.burn_rate(label) for label in BURN_WINDOWS}

    @property
    def budget_total(self) -> float:
        """Bad requests the window may have."""
        return self.window.total * self.slo.error_budget

    @property
    def budget_remaining(self) -> float:
        """Fraction of the budget left (1 without requests; negative when overspent)."""
        budget = self.budget_total
        return 1.0 - self.window.bad / budget if budget else 1.0

    def firing_rules(self, kind: str) -> list[Rule]:
        return [rule for rule in RULES if rule.kind == kind
                and self.burn_rate(rule.long) >= rule.factor
                and self.burn_rate(rule.short) >= rule.factor]  # fmt: skip


def evaluate_slos(
    project_id: int,
    at: datetime,
    slos: list[Slo] | None = None,
    connection: BaseDatabaseWrapper = default_connection,
) -> list[Evaluation]:
    """Counts and burn rates of a project's SLOs (or of `slos`) at the minute `at`."""
    if slos is None:
        slos = list(Slo.objects.filter(project_id=project_id).order_by("id"))
    if not slos:
        return []
    specs = _specs({slo.window_days for slo in slos})
    counts = sli.window_counts(connection, project_id, specs, at, [slo.pk for slo in slos])
    evaluations = []
    for slo in slos:
        found = counts.get(slo.pk, {})
        evaluations.append(Evaluation(
            slo=slo, window=found.get(window_label(slo.window_days), Counts()),
            burn={label: found.get(label, Counts()) for label in BURN_WINDOWS}, at=at,
        ))  # fmt: skip
    return evaluations


def run_alerts(project_id: int, at: datetime) -> list[Evaluation]:
    """One evaluation minute of a project: statuses stored, page and ticket alerts
    recorded (and their transitions notified)."""
    at = evaluation_minute(at)
    evaluations = evaluate_slos(project_id, at)
    if not evaluations:
        return []
    _store_statuses(project_id, evaluations)
    for kind in SEVERITY_KINDS:
        state.record_many(project_id, kind, [_finding(e, kind) for e in evaluations], at)
    return evaluations


def _finding(evaluation: Evaluation, kind: str) -> state.Finding:
    slo, rules = evaluation.slo, evaluation.firing_rules(kind)
    rates = evaluation.burn_rates()
    severity = "page" if kind == Alert.Kind.SLO_PAGE else "ticket"
    if rules:
        summary = f"SLO {slo.name!r} burns its error budget: {rules[0].name} ({severity})"
    else:
        summary = f"SLO {slo.name!r} is back within its {severity} burn rates"
    return state.Finding(
        key=str(slo.pk),
        firing=bool(rules),
        summary=summary,
        payload={
            "slo_id": slo.pk, "slo": slo.name, "service": slo.service, "severity": severity,
            "rules": [rule.name for rule in rules],
            "burn_rates": {label: round(rate, 4) for label, rate in rates.items()},
            "budget_remaining": round(evaluation.budget_remaining, 6),
        },
    )  # fmt: skip


def _store_statuses(project_id: int, evaluations: list[Evaluation]) -> None:
    SloStatus.objects.bulk_create(
        [
            SloStatus(
                slo=e.slo, project_id=project_id, evaluated_at=e.at, total=e.window.total,
                good=e.window.good, budget_remaining=e.budget_remaining,
                burn_rates=e.burn_rates(),
            )
            for e in evaluations
        ],
        update_conflicts=True,
        unique_fields=["slo"],
        update_fields=["evaluated_at", "total", "good", "budget_remaining", "burn_rates"],
    )  # fmt: skip


def budget_history(
    slo: Slo, at: datetime, connection: BaseDatabaseWrapper = default_connection
) -> list[dict]:
    """The budget's burn-down over the SLO window ending at `at`: after each UTC hour, the
    fraction of the window's budget left given the bad requests since the window began."""
    start = at - timedelta(days=slo.window_days)
    hours = sli.hourly_counts(connection, slo.project_id, slo.pk, start, at)
    budget = sum(c.total for c in hours.values()) * slo.error_budget
    points, spent = [], 0
    for hour in sorted(hours):
        spent += hours[hour].bad
        points.append({
            "bucket": hour, "total": hours[hour].total, "bad": hours[hour].bad,
            "remaining": 1.0 - spent / budget if budget else 1.0,
        })  # fmt: skip
    return points
