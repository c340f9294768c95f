"""SLO pages: the project's SLOs with their last evaluation and alert states, and one
SLO's status now (SLI, budget, burn rates against the rules, the budget's burn-down)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render

from observability.alerting import slos
from observability.alerting.models import Alert, Slo, SloStatus
from observability.ui.pages import Page, project_page

CHART_WIDTH, CHART_HEIGHT = 600, 120


def _alert_states(project_id: int, keys) -> dict[tuple[str, str], str]:
    alerts = Alert.objects.filter(project_id=project_id, kind__in=slos.SEVERITY_KINDS,
                                  key__in=[str(key) for key in keys])  # fmt: skip
    return {(alert.kind, alert.key): alert.state for alert in alerts}


@project_page
def slo_list(request, page: Page):
    project_slos = list(Slo.objects.filter(project=page.project).order_by("name"))
    statuses = {s.slo_id: s for s in SloStatus.objects.filter(project=page.project)}
    states = _alert_states(page.project.pk, [slo.pk for slo in project_slos])
    rows = [
        {
            "slo": slo,
            "status": (status := statuses.get(slo.pk)),
            # In percent with 3 decimals: SLIs live near 100 %.
            "sli": 100 * status.good / status.total if status and status.total else None,
            "burn_1h": status.burn_rates.get("1h") if status else None,
            "page": states.get((Alert.Kind.SLO_PAGE, str(slo.pk)), Alert.State.OK),
            "ticket": states.get((Alert.Kind.SLO_TICKET, str(slo.pk)), Alert.State.OK),
        }
        for slo in project_slos
    ]
    return render(request, "ui/slos.html", page.context(rows=rows))


@project_page
def slo_detail(request, page: Page, slo_id: int):
    slo = Slo.objects.filter(project=page.project, pk=slo_id).first()
    if slo is None:
        raise Http404("No such SLO.")
    at = slos.evaluation_minute()
    (evaluation,) = slos.evaluate_slos(page.project.pk, at, [slo], connection=page.database)
    rates = evaluation.burn_rates()
    rules = [
        {"rule": rule, "long": rates[rule.long], "short": rates[rule.short],
         "firing": rates[rule.long] >= rule.factor and rates[rule.short] >= rule.factor}
        for rule in slos.RULES
    ]  # fmt: skip
    history = slos.budget_history(slo, at, connection=page.database)
    states = _alert_states(page.project.pk, [slo.pk])
    context = page.context(
        slo=slo, evaluation=evaluation, rates=rates, rules=rules,
        sli=None if evaluation.window.sli is None else 100 * evaluation.window.sli,
        page_state=states.get((Alert.Kind.SLO_PAGE, str(slo.pk)), Alert.State.OK),
        ticket_state=states.get((Alert.Kind.SLO_TICKET, str(slo.pk)), Alert.State.OK),
        burn_down=_polyline(history), history_points=len(history),
        width=CHART_WIDTH, height=CHART_HEIGHT,
    )  # fmt: skip
    return render(request, "ui/slo.html", context)


def _polyline(history: list[dict]) -> str:
    """SVG points of the budget burn-down: x over the hours, y from 1 (top) down to the
    lowest value shown (0, or below when overspent)."""
    if not history:
        return ""
    values = [point["remaining"] for point in history]
    low = min(0.0, *values)
    span = (1.0 - low) or 1.0
    step = CHART_WIDTH / max(1, len(values) - 1)
    return " ".join(
        f"{n * step:.1f},{(1.0 - value) / span * CHART_HEIGHT:.1f}"
        for n, value in enumerate(values)
    )
