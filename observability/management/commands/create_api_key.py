"""Create an API key for automation; prints only the key on stdout."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug

from observability.models import ApiKey, Project


class Command(BaseCommand):
    help = (
        "Create an API key for a project (creating the project if missing) and print only "
        "the key on stdout. The key is not stored and cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument(
            "--scopes",
            default="ingest,read",
            help="Comma-separated scopes: ingest, read, admin (default ingest,read). admin "
            "allows deleting records.",
        )
        parser.add_argument("--name", default="automation", help="A label for the key.")

    def handle(self, *args, project: str, scopes: str, name: str, **options):
        scope_list = parse_scopes(scopes)
        try:
            validate_slug(project)
        except ValidationError as exc:
            raise CommandError(f"--project: {exc.messages[0]}") from exc
        project_obj, created = Project.objects.get_or_create(
            slug=project, defaults={"name": project}
        )
        if created:
            self.stderr.write(f"created project {project}")
        _, plaintext = ApiKey.objects.issue(project_obj, name, scope_list)
        self.stdout.write(plaintext)


def parse_scopes(raw: str) -> list[str]:
    scopes = [scope.strip() for scope in raw.split(",") if scope.strip()]
    unknown = sorted(set(scopes) - set(ApiKey.SCOPES))
    if unknown or not scopes:
        raise CommandError(
            f"--scopes: unknown or empty scopes {unknown}; allowed: {', '.join(ApiKey.SCOPES)}"
        )
    return scopes
