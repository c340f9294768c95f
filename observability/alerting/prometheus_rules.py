"""Prometheus alerting rules for the SLOs, for teams that alert through Alertmanager.

The rules read the burn rates this app already computes and exports
(`apm_slo_burn_rate{window}` on /metrics, from the per-minute evaluation), so Prometheus
pages on the same numbers as the built-in alerts: the same RULES (slos.py), one alert
per SLO and severity, firing while either of its window pairs burns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from observability.alerting.models import Alert, Slo
from observability.alerting.slos import RULES

ALERT_NAMES = {
    Alert.Kind.SLO_PAGE: "ApmSloBurnRatePage",
    Alert.Kind.SLO_TICKET: "ApmSloBurnRateTicket",
}
SEVERITIES = {Alert.Kind.SLO_PAGE: "page", Alert.Kind.SLO_TICKET: "ticket"}


def _burn(slo: Slo, project: str, window: str) -> str:
    return f'apm_slo_burn_rate{{project="{project}", slo_id="{slo.pk}", window="{window}"}}'


def _expr(slo: Slo, project: str, kind: str) -> str:
    pairs = [
        f"({_burn(slo, project, rule.long)} > {rule.factor:g} and ignoring (window) "
        f"{_burn(slo, project, rule.short)} > {rule.factor:g})"
        for rule in RULES
        if rule.kind == kind
    ]
    # One series per SLO whichever pair fires: the window label goes.
    return "max without (window) (\n  " + "\n  or ignoring (window)\n  ".join(pairs) + "\n)"


def _plain(text: str) -> str:
    """A name as annotation text: Prometheus templates annotations, so no braces."""
    return text.replace("{", "(").replace("}", ")")


def rules(slos: Iterable[Slo]) -> dict:
    """The rule file (as a dict for YAML): one group per project."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for slo in slos:
        project = slo.project.slug
        for kind, alert in ALERT_NAMES.items():
            pairs = ", ".join(rule.name for rule in RULES if rule.kind == kind)
            groups[project].append({
                "alert": alert,
                "expr": _expr(slo, project, kind),
                "labels": {"severity": SEVERITIES[kind], "project": project,
                           "slo_id": str(slo.pk), "service": slo.service},
                "annotations": {
                    "summary": f"SLO {_plain(slo.name)!r} of {slo.service} burns its error "
                               f"budget ({SEVERITIES[kind]})",
                    "description": f"Target {slo.target}% over {slo.window_days} days; fires "
                                   f"when both windows of a pair burn: {pairs}.",
                },
            })  # fmt: skip
    return {
        "groups": [
            {"name": f"apm-slo-{project}", "interval": "1m", "rules": group}
            for project, group in sorted(groups.items())
        ]
    }
