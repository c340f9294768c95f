"""What every project page shares: sign-in, the project and role, the scope from the URL,
the read database, and the 400 page for parameters it cannot use."""

from __future__ import annotations

import dataclasses
import functools

from django.contrib.auth.views import redirect_to_login
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest
from django.shortcuts import render
from django_htmx.http import HttpResponseClientRedirect

from apm_platform import db_router
from observability.analytics.queries import Filters, KpiQuery, Window
from observability.models import Dimension, DimensionValue, Project, Role
from observability.ui import access
from observability.ui.scope import BadParameter, Scope

# The tab of the project nav each page belongs to (by URL name).
TAB_OF_PAGE = {
    "overview": "overview", "service": "overview", "endpoint": "overview",
    "requests": "requests", "request": "requests",
    "errors": "errors", "error-group": "errors",
    "search": "search", "settings": "settings", "slos": "slos", "slo": "slos",
}  # fmt: skip


@dataclasses.dataclass
class Page:
    request: HttpRequest
    project: Project
    role: str
    scope: Scope
    database: BaseDatabaseWrapper

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def kpi(self, window: Window | None = None, **filters) -> KpiQuery:
        """A KPI query in this page's scope (its window and environment) and `filters`."""
        filters.setdefault("environment", self.scope.environment)
        return KpiQuery(
            self.project.pk, window or self.scope.window, Filters(**filters), self.database
        )

    def projects(self):
        return Project.objects.visible_to(self.request.user).only("slug", "name")

    def services(self) -> list[str]:
        return list(
            DimensionValue.objects.filter(project=self.project, dimension=Dimension.SERVICE)
            .order_by("value")
            .values_list("value", flat=True)
        )

    def environments(self) -> list[str]:
        return list(
            DimensionValue.objects.filter(project=self.project, dimension=Dimension.ENVIRONMENT)
            .exclude(value="")
            .values_list("value", flat=True)
        )

    def context(self, **extra) -> dict:
        match = self.request.resolver_match
        nav = TAB_OF_PAGE.get(match.url_name if match else "")
        return {"page": self, "project": self.project, "scope": self.scope, "nav": nav, **extra}


def project_page(view):
    """A view of one project: signed in, with access (else 404), in the URL's scope."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, slug: str, *args, **kwargs):
        if not request.user.is_authenticated:
            if request.htmx:  # a fragment cannot show the login page: the browser goes there
                page_url = request.htmx.current_url_abs_path or "/"
                return HttpResponseClientRedirect(redirect_to_login(page_url).url)
            return redirect_to_login(request.get_full_path())
        project, role = access.project_of(request.user, slug)
        try:
            scope = Scope.from_query(request.GET)
            page = Page(request, project, role, scope, connections[db_router.read_alias()])
            return view(request, page, *args, **kwargs)
        except BadParameter as exc:
            return render(
                request,
                "ui/bad_request.html",
                {"project": project, "errors": exc.errors},
                status=400,
            )

    return wrapper
