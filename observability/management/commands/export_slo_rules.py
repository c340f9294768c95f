"""Write Prometheus alerting rules for the SLOs (observability/alerting/prometheus_rules.py)."""

from __future__ import annotations

import yaml
from django.core.management.base import BaseCommand, CommandError

from observability.alerting import prometheus_rules
from observability.alerting.models import Slo
from observability.models import Project


class Command(BaseCommand):
    help = (
        "Write a Prometheus rule file with the SLOs' multi-window burn-rate alerts (page: "
        "14.4x over 1h and 5m, 6x over 6h and 30m; ticket: 3x over 1d and 2h, 1x over 3d "
        "and 6h), on the apm_slo_burn_rate series of /metrics. Check it with "
        "`promtool check rules`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="File to write (default: stdout).")
        parser.add_argument("--project", help="Only this project's SLOs (its slug).")

    def handle(self, *args, output=None, project=None, **options):
        slos = Slo.objects.select_related("project").order_by("project__slug", "id")
        if project is not None:
            if not Project.objects.filter(slug=project).exists():
                raise CommandError(f"no project {project!r}")
            slos = slos.filter(project__slug=project)
        text = yaml.safe_dump(prometheus_rules.rules(slos), sort_keys=False, width=100)
        if output is None:
            self.stdout.write(text, ending="")
            return
        with open(output, "w") as file:
            file.write(text)
        self.stderr.write(f"export_slo_rules: {slos.count()} SLO(s) written to {output}")
