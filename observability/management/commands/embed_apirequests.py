"""Backfill search documents and embeddings (never on the ingest path)."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime
from tqdm import tqdm

from observability import ai
from observability.ai.backfill import backfill, pending_estimate


class Command(BaseCommand):
    help = (
        "Turn requests into masked search documents and embed them with the configured "
        "provider (EMBEDDING_PROVIDER; with none, documents only: keyword search). "
        "Resumable: it continues from where the last run stopped; --since rescans."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help="Rescan from this time (ISO 8601).")
        parser.add_argument("--limit", type=int, help="Process at most this many requests.")
        parser.add_argument("--batch-size", type=int, default=500, help="Requests per batch.")
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Count what would be done; call no provider, write nothing.",
        )  # fmt: skip

    def handle(self, *args, since=None, limit=None, batch_size=500, dry_run=False, **options):
        since_time = parse_datetime(since) if since else None
        if since and since_time is None:
            raise CommandError(f"--since: not an ISO 8601 date-time: {since!r}")
        if batch_size <= 0 or (limit is not None and limit <= 0):
            raise CommandError("--batch-size and --limit must be positive")
        provider = ai.get_provider()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the batch, then stop
        total = limit or pending_estimate(since_time)
        with tqdm(total=total, unit="req", file=self.stderr._out, desc="embedding") as bar:
            try:
                report = backfill(provider, since=since_time, limit=limit, batch_size=batch_size,
                                  dry_run=dry_run, progress=bar.update, stop=stop)  # fmt: skip
            except ai.EmbeddingError as exc:
                raise CommandError(f"{exc} (nothing of the failed batch was stored)") from exc
        model = provider.model if provider else "none (documents only)"
        verb = "would process" if dry_run else "processed"
        self.stdout.write(
            f"{verb} {report.requests} request(s), {report.documents} distinct document(s), "
            f"{report.embedded} embedded with {model}"
        )
