"""Anomaly alerts: the detector's findings (observability/anomalies/) through the alert
state machine, so that they fire, resolve and notify like every other alert."""

from __future__ import annotations

from datetime import datetime, timedelta

from observability.alerting import state
from observability.alerting.models import Alert
from observability.anomalies import detector

# The detector judges the minutes that closed before `at`; a batch of the last minute
# may still be on its way (clients flush every few seconds, retries take longer), and a
# minute missing its last batch would look like a traffic drop.
LATE_DATA_ALLOWANCE = timedelta(minutes=1)

UNITS = {"latency_p95": "ms", "traffic_drop": "requests/min"}  # an error rate is a percentage


def run_alerts(project_id: int, at: datetime) -> list[detector.Finding]:
    """One evaluation minute of a project's anomalies: alerts recorded (and their
    transitions notified)."""
    findings = detector.evaluate(project_id, at - LATE_DATA_ALLOWANCE)
    state.record_many(
        project_id, Alert.Kind.ANOMALY, [_finding(f) for f in findings], at, resolve_missing=True
    )
    return findings


def _finding(finding: detector.Finding) -> state.Finding:
    where = f"{finding.service} {finding.endpoint}"
    signal = finding.signal.replace("_", " ")
    if finding.firing:
        summary = (f"{where}: {signal} {_value(finding, finding.observed)} against a usual "
                   f"{_value(finding, finding.baseline.median)}")  # fmt: skip
    else:
        summary = f"{where}: {signal} back to usual"
    return state.Finding(
        key=finding.key,
        firing=finding.firing,
        summary=summary,
        payload={
            "service": finding.service,
            "endpoint": finding.endpoint,
            "signal": finding.signal,
            "observed": finding.observed,
            "threshold": finding.threshold,
            "baseline_median": finding.baseline.median,
            "baseline_mad": finding.baseline.mad,
            "requests": finding.requests,
        },
    )


def _value(finding: detector.Finding, value: float | None) -> str:
    if value is None:
        return "none"
    if finding.signal == "error_rate":
        return f"{value:.1%}"
    return f"{value:.0f} {UNITS[finding.signal]}"
