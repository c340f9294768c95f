"""Who may see which project: memberships (viewer or admin); staff see every project.

A project the user may not see answers 404, like one that does not exist: the UI does not
tell outsiders which projects exist.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from observability.models import Membership, Project, Role


def project_of(user, slug: str) -> tuple[Project, str]:
    """The project `slug` and the user's role in it; 404 without access."""
    project = Project.objects.filter(slug=slug).first()
    role = Membership.role_of(user, project) if project is not None else None
    if role is None:
        raise Http404("No such project.")
    return project, role


SETTINGS_ARE_FOR_ADMINS = "Project settings are for the project's admins."


def require_admin(role: str, reason: str = SETTINGS_ARE_FOR_ADMINS) -> None:
    if role != Role.ADMIN:
        raise PermissionDenied(reason)
