"""Errors: the project's error groups seen in the range (sortable, filtered by service,
endpoint and status), and one group's page (timeline, endpoints, samples, status
actions for project admins). Both read the error-group domain
(observability/error_groups/queries.py), as the API does, on the read database."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from observability.error_groups import queries
from observability.models import ErrorGroup
from observability.ui import charts
from observability.ui.access import require_admin
from observability.ui.pages import Page, project_page
from observability.ui.scope import BadParameter, check

GROUPS_SHOWN = 100
# The table's sortable columns: each sorts descending (most, or newest, first).
SORTS = {"count": "-window_count", "last_seen": "-last_seen", "first_seen": "-first_seen"}
DEFAULT_SORT = "last_seen"
# The status a group can be given from each status, and the button's label.
ACTIONS = {
    ErrorGroup.Status.OPEN: [("resolved", "Resolve"), ("ignored", "Ignore")],
    ErrorGroup.Status.RESOLVED: [("open", "Reopen"), ("ignored", "Ignore")],
    ErrorGroup.Status.IGNORED: [("open", "Reopen"), ("resolved", "Resolve")],
}
STATUS_DONE = {"open": "reopened", "resolved": "resolved", "ignored": "ignored"}


class ErrorsForm(forms.Form):
    """The list's filters and sort; the window comes from the scope."""

    service = forms.CharField(required=False, max_length=128)
    endpoint = forms.CharField(required=False, max_length=512)
    status = forms.ChoiceField(required=False, choices=[("", "any"), *ErrorGroup.Status.choices])
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in SORTS])


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=ErrorGroup.Status.choices)


def _groups(page: Page, request) -> dict:
    form = ErrorsForm(request.GET)
    data = check(form)
    sort = data["sort"] or DEFAULT_SORT
    window = page.scope.window
    groups = queries.seen(
        queries.of_project(page.project.pk, page.database.alias),
        start=window.start,
        end=window.end,
        service=data["service"],
        endpoint=data["endpoint"],
        status=data["status"],
    )
    columns = ("title", "exception_type", "service", "endpoint", "status", "count",
               "first_seen", "last_seen")  # fmt: skip
    rows = list(queries.ordered(groups, SORTS[sort]).only(*columns)[: GROUPS_SHOWN + 1])
    filters = {name: data[name] for name in ("service", "endpoint", "status") if data[name]}
    return {
        "groups": rows[:GROUPS_SHOWN],
        "more": len(rows) > GROUPS_SHOWN,
        "shown": GROUPS_SHOWN,
        "form": form,
        "filters": filters,
        "sort": sort,
    }


@project_page
def errors_page(request, page: Page):
    context = page.context(services=page.services(), **_groups(page, request))
    return render(request, "ui/errors.html", context)


@project_page
def errors_table(request, page: Page):
    """The groups table, re-sorted (htmx fragment)."""
    return render(request, "ui/_errors_table.html", page.context(**_groups(page, request)))


def _group_or_404(page: Page, group_id: int, using: str | None = None) -> ErrorGroup:
    group = queries.of_project(page.project.pk, using).filter(pk=group_id).first()
    if group is None:
        raise Http404("No such error group in this project.")
    return group


@project_page
def error_group(request, page: Page, group_id: int):
    group = _group_or_404(page, group_id, page.database.alias)
    window = page.scope.window
    if reason := queries.timeline_error(window.start, window.end):
        raise BadParameter({"from": [reason]})
    hours = queries.timeline(group, window.start, window.end)
    samples = list(queries.samples(group))
    context = page.context(
        group=group,
        window_count=sum(hour["count"] for hour in hours),
        endpoints=queries.endpoints(group),
        samples=samples,
        latest_message=samples[0].error_message if samples else None,
        actions=ACTIONS[group.status] if page.is_admin else [],
        charts={"timeline": charts.hourly_counts(hours, queries.hour_of(window.start), window.end)},
    )
    return render(request, "ui/error_group.html", context)


@require_POST
@project_page
def set_group_status(request, page: Page, group_id: int):
    """Resolve, ignore or reopen a group: project admins only (viewers get 403)."""
    require_admin(page.role, "Changing an error group's status is for the project's admins.")
    group = _group_or_404(page, group_id)  # the primary: about to be changed
    status = check(StatusForm(request.POST))["status"]
    queries.set_status(group, status)
    messages.success(request, f"Error group {STATUS_DONE[status]}.")
    url = reverse("ui:error-group", args=[page.project.slug, group.pk])
    query = page.scope.query()
    return redirect(f"{url}?{query}" if query else url)
