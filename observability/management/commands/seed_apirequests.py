"""Seed synthetic API request records."""

from __future__ import annotations

import functools
import itertools
import urllib.error
import urllib.request
from datetime import timedelta

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone
from tqdm import tqdm

from observability import demo
from observability.analytics import backend
from observability.error_groups import store as error_groups
from observability.error_groups.fingerprint import is_failure
from observability.ingest import cardinality
from observability.ingest.events import Row
from observability.ingest.writer import copy_rows, jsonb_value
from observability.models import ApiRequest, Project, ServiceSettings
from observability.seeding import CATALOGUE, TrafficGenerator

# The generator's fields that are columns as they are.
SEEDED_COLUMNS = [
    f for f in Row._fields if f not in ("project_id", "attributes", "apdex_t_ms", "error_group_id")
]
# What the generator says about a failure, for its error group (not columns).
FAILURE_FIELDS = ("exception_type", "exception_message", "stacktrace")


class Command(BaseCommand):
    help = (
        "Seed synthetic request records (Faker): realistic services and routes, log-normal "
        "latencies with slow endpoints, error bursts and day/night traffic, ending now."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--count", type=int, default=10_000, help="Number of requests (default 10000)."
        )
        parser.add_argument(
            "--days", type=float, default=7, help="Spread over this many days back from now."
        )
        parser.add_argument(
            "--services",
            nargs="+",
            default=list(CATALOGUE),
            choices=list(CATALOGUE),
            help="Services to generate (default: all).",
        )
        parser.add_argument(
            "--via",
            choices=["copy", "orm", "api"],
            default="copy",
            help="copy: PostgreSQL COPY (fast); orm: Django bulk_create; api: POST batches "
            "to a running server's /api/v1/ingest/ (see --url, --api-key).",
        )
        parser.add_argument(
            "--url", default="http://127.0.0.1:8000", help="With --via api: the server's base URL."
        )
        parser.add_argument(
            "--api-key",
            default=None,
            help="With --via api: an ingest key (default: the demo key file).",
        )
        parser.add_argument("--project", default="demo", help="Project slug (created if missing).")
        parser.add_argument(
            "--seed", type=int, default=None, help="Random seed, for reproducible data."
        )
        parser.add_argument("--batch-size", type=int, default=5_000)

    def handle(self, *args, count, days, services, via, project, seed, batch_size, **options):
        if count < 0 or days <= 0 or batch_size <= 0:
            raise CommandError("--count must be >= 0, --days and --batch-size > 0")
        project_obj, _ = Project.objects.get_or_create(
            slug=project, defaults={"name": project.title()}
        )
        end = timezone.now()
        start = end - timedelta(days=days)
        generator = TrafficGenerator(start=start, end=end, services=services, seed=seed)
        # The daily partitions the data will land in (portable backend).
        backend.of(connection).prepare_partitions(connection, start.date(), end.date())
        if via == "api":
            key = options["api_key"] or demo.saved_key(
                project_obj, "demo", settings.APM_DEMO_KEY_FILE
            )
            write = functools.partial(
                post_batch, f"{options['url'].rstrip('/')}/api/v1/ingest/", key
            )
        else:
            thresholds = ServiceSettings.objects.apdex_thresholds(project_obj.pk, set(services))
            write = functools.partial(
                self._write_copy if via == "copy" else self._write_orm, project_obj.pk, thresholds
            )
        events = generator.events(count)
        with tqdm(
            total=count,
            unit="req",
            desc=f"seeding via {via}",
            disable=count == 0,
            file=self.stderr._out,
        ) as progress:
            while batch := list(itertools.islice(events, batch_size)):
                with transaction.atomic():
                    write(batch)
                progress.update(len(batch))
        self.stdout.write(f"seeded {count} requests into project {project} over {days:g} days")

    @staticmethod
    def _write_copy(project_id: int, thresholds: dict[str, float], batch: list[dict]) -> None:
        rows = [
            Row(
                **{name: e[name] for name in SEEDED_COLUMNS},
                project_id=project_id,
                attributes=jsonb_value(orjson.dumps(e["attributes"])),
                apdex_t_ms=thresholds[e["service"]],
            )
            for e in batch
        ]
        # Under the same cardinality caps as ingest, which also records the services,
        # environments and endpoints seen (the UI's filters and settings list them).
        rows = cardinality.cap_rows(project_id, rows, "seed").rows
        rows, failed = _with_error_groups(project_id, rows, batch)
        copy_rows(connection, rows)
        _count_failures(project_id, failed)

    @staticmethod
    def _write_orm(project_id: int, thresholds: dict[str, float], batch: list[dict]) -> None:
        columns = [{k: v for k, v in e.items() if k not in FAILURE_FIELDS} for e in batch]
        rows = [Row(**{n: e[n] for n in SEEDED_COLUMNS}, project_id=project_id, attributes=b"")
                for e in batch]  # fmt: skip
        rows, failed = _with_error_groups(project_id, rows, batch)
        ApiRequest.objects.bulk_create(
            ApiRequest(project_id=project_id, apdex_t_ms=thresholds[e["service"]],
                       error_group_id=row.error_group_id, **e)
            for e, row in zip(columns, rows, strict=True)
        )  # fmt: skip
        _count_failures(project_id, failed)


def _count_failures(project_id: int, failed: list[Row]) -> None:
    """As ingest counts them, then folded at once: the seeded groups' counts are complete."""
    error_groups.record(project_id, failed)
    error_groups.fold()


def _with_error_groups(project_id: int, rows: list[Row], batch: list[dict]):
    """The rows with their error groups (as ingest gives them), and the failed ones."""
    failed = [
        n for n, e in enumerate(batch) if is_failure(e["status_code"], e.get("exception_type", ""))
    ]
    failures = [
        (error_groups.failure(rows[n], **{f: batch[n].get(f, "") for f in FAILURE_FIELDS}), rows[n])
        for n in failed
    ]
    rows = list(rows)
    ids, _ = error_groups.assign(project_id, failures)
    for n, group in zip(failed, ids, strict=True):
        rows[n] = rows[n]._replace(error_group_id=group)
    return rows, [rows[n] for n in failed]


def post_batch(url: str, key: str, batch: list[dict]) -> None:
    """POST one batch to a running server's ingest endpoint, like any client would."""
    request = urllib.request.Request(  # noqa: S310 - the operator's own --url
        url, data=orjson.dumps(batch), method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        raise CommandError(f"{url} answered {exc.code}: {exc.read()[:500].decode()}") from exc
    except urllib.error.URLError as exc:
        raise CommandError(f"cannot reach {url}: {exc.reason}") from exc
