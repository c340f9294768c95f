"""`make run`: migrate, seed demo data if empty, print the demo key, serve with gunicorn."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apm_platform import gunicorn_conf
from observability import demo
from observability.models import ApiRequest, Project


class Command(BaseCommand):
    help = (
        "Start the product locally: migrate, seed demo data when the database has none, "
        "create or reuse the demo API key (written to .data/demo-api-key) and the demo "
        "user of the UI (.data/demo-login), then serve "
        "with gunicorn, with the rollup scheduler (run_jobs) beside it, until Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--workers", type=int, default=2)
        parser.add_argument("--seed-count", type=int, default=200_000)
        parser.add_argument("--seed-days", type=float, default=14)

    def handle(self, *args, port, host, workers, seed_count, seed_days, **options):
        call_command("migrate", interactive=False, verbosity=1)
        project, _ = Project.objects.get_or_create(slug="demo", defaults={"name": "Demo"})
        if not ApiRequest.objects.exists():
            call_command(
                "seed_apirequests", count=seed_count, days=seed_days, project="demo", seed=42
            )
        key = demo.saved_key(project, "demo", settings.APM_DEMO_KEY_FILE)
        username, password = demo.saved_login(project, settings.APM_DEMO_LOGIN_FILE)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nUI: http://{host}:{port}/  sign in as {username} / {password} "
                f"(also in {settings.APM_DEMO_LOGIN_FILE})\n"
                f"Demo API key (also in {settings.APM_DEMO_KEY_FILE}):\n  {key}\n"
                f"Try: curl -H 'Authorization: Bearer {key}' "
                f"'http://{host}:{port}/api/v1/requests/?service=checkout&page_size=5'\n"
                f"API docs: http://{host}:{port}/api/docs/\n"
            )
        )
        self.serve(host, port, workers)

    def serve(self, host: str, port: int, workers: int) -> None:
        metrics_dir = settings.BASE_DIR / ".data" / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)  # stale worker files would skew /metrics
        metrics_dir.mkdir(parents=True)
        command = [
            *gunicorn_conf.command(f"{host}:{port}", workers),
            "--env",
            f"PROMETHEUS_MULTIPROC_DIR={metrics_dir}",
        ]
        # Rollups are refreshed by the scheduler; on TimescaleDB it only lists its jobs.
        jobs = subprocess.Popen([sys.executable, "manage.py", "run_jobs"], cwd=settings.BASE_DIR)
        server = subprocess.Popen(command)  # noqa: S603 - our own interpreter and arguments
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.wait()
        except KeyboardInterrupt:
            # Ctrl-C (the terminal signals the children too) or SIGTERM: let gunicorn finish
            # its requests and the scheduler its job, so the embedded database, stopped by
            # manage.py after us, has no clients left.
            server.send_signal(signal.SIGTERM)
            server.wait()
        finally:
            if jobs.poll() is None:
                jobs.send_signal(signal.SIGTERM)
            jobs.wait()
        if server.returncode not in (0, -2):
            raise SystemExit(server.returncode)


def _interrupt(signum, frame):
    raise KeyboardInterrupt
