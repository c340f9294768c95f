"""The embedding backfill: requests -> masked documents -> embeddings, off the ingest path.

Each project's requests are walked in (time, event_id) order through the
(project_id, time) index, a batch at a time, from a cursor saved with each batch, so
an interrupted backfill resumes where it stopped and a re-run skips what is done.
Each distinct document is embedded once per model. The provider is called before the
batch's transaction opens (no transaction waits on the network); if it fails, the
batch is not stored and the cursor does not move. Without a provider only documents
are built, which is all keyword search needs.

Requests that arrive later than the cursor (more than LAG behind now) are not picked
up; `embed_apirequests --since` rescans from a given time (idempotent).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from observability.ai import Provider, vector_literal
from observability.ai.documents import document_hash, document_text
from observability.analytics import sketches
from observability.models import EmbeddingCursor, Project

# The cursor stays this far behind now, so requests still being committed are not passed.
LAG = timedelta(minutes=2)
NO_PROVIDER = "none"
FIRST_EVENT = uuid.UUID(int=0)

NEXT_REQUESTS = """
SELECT event_id, time, service, endpoint, method, status_code, latency_ms, environment,
       error_message
FROM api_request
WHERE project_id = %(project)s AND time >= %(time)s AND time < %(until)s
  AND (time > %(time)s OR event_id > %(event_id)s)
ORDER BY time, event_id
LIMIT %(limit)s
"""
MISSING_EMBEDDINGS = """
SELECT h FROM unnest(%(hashes)s::text[]) AS h
WHERE NOT EXISTS (SELECT 1 FROM apm_embedding e WHERE e.model = %(model)s AND e.doc_hash = h)
"""
INSERT_DOCUMENTS = """
INSERT INTO apm_document (doc_hash, text, search)
SELECT h, t, to_tsvector('simple', t)
FROM unnest(%(hashes)s::text[], %(texts)s::text[]) AS d(h, t)
ON CONFLICT (doc_hash) DO NOTHING
"""
INSERT_EMBEDDINGS = """
INSERT INTO apm_embedding (model, doc_hash, dim, embedding)
SELECT %(model)s, h, %(dim)s, v::vector
FROM unnest(%(hashes)s::text[], %(vectors)s::text[]) AS e(h, v)
ON CONFLICT (model, doc_hash) DO NOTHING
"""
INSERT_REQUEST_DOCUMENTS = """
INSERT INTO apm_request_document (event_id, time, project_id, service, doc_hash)
SELECT e, t, %(project)s, s, h
FROM unnest(%(event_ids)s::uuid[], %(times)s::timestamptz[], %(services)s::text[],
            %(hashes)s::text[]) AS r(e, t, s, h)
ON CONFLICT (project_id, event_id, time) DO NOTHING
"""


@dataclasses.dataclass
class BackfillReport:
    requests: int = 0
    documents: int = 0  # distinct documents in the processed requests
    embedded: int = 0  # documents sent to the provider


def pending_estimate(since: datetime | None = None) -> int:
    """About how many requests the backfill has ahead of it (for the progress bar)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM api_request WHERE time >= %s",
            [since or datetime.now(UTC) - timedelta(days=settings.APM_RAW_RETENTION_DAYS)],
        )
        return cursor.fetchone()[0]


def backfill(provider: Provider | None, *, since: datetime | None = None,
             limit: int | None = None, batch_size: int = 500, dry_run: bool = False,
             progress: Callable[[int], None] = lambda n: None,
             stop: threading.Event | None = None) -> BackfillReport:  # fmt: skip
    """Process requests into documents (and embeddings with a provider); see module doc."""
    run = _Run(provider, dry_run, until=datetime.now(UTC) - LAG)
    for project in Project.objects.order_by("pk"):
        if since is not None:
            run.move(project, since, FIRST_EVENT)  # rescan from `since`
        while limit is None or run.report.requests < limit:
            if stop is not None and stop.is_set():
                return run.report
            size = batch_size if limit is None else min(batch_size, limit - run.report.requests)
            done = run.batch(project, size)
            progress(done)
            if done < size:
                break
    return run.report


class _Run:
    def __init__(self, provider: Provider | None, dry_run: bool, until: datetime):
        self.provider, self.dry_run, self.until = provider, dry_run, until
        # Without pgvector there is nowhere to keep embeddings: documents only.
        self.embeds = provider is not None and sketches.of(connection).has_pgvector
        self.model = provider.model if self.embeds else NO_PROVIDER
        self.report = BackfillReport()
        # Dry runs walk the data without saving where they are.
        self.unsaved: dict[int, tuple[datetime, uuid.UUID]] = {}

    def position(self, project: Project) -> tuple[datetime, uuid.UUID]:
        if project.pk in self.unsaved:
            return self.unsaved[project.pk]
        saved = EmbeddingCursor.objects.filter(model=self.model, project=project).first()
        if saved:
            return saved.time, saved.event_id
        return datetime.now(UTC) - timedelta(days=settings.APM_RAW_RETENTION_DAYS), FIRST_EVENT

    def move(self, project: Project, time: datetime, event_id: uuid.UUID) -> None:
        if self.dry_run:
            self.unsaved[project.pk] = (time, event_id)
        else:
            EmbeddingCursor.objects.update_or_create(
                model=self.model, project=project, defaults={"time": time, "event_id": event_id}
            )

    def batch(self, project: Project, size: int) -> int:
        time, event_id = self.position(project)
        with connection.cursor() as cursor:
            cursor.execute(NEXT_REQUESTS, {
                "project": project.pk, "time": time, "event_id": event_id,
                "until": self.until, "limit": size,
            })  # fmt: skip
            rows = cursor.fetchall()
        if not rows:
            return 0
        texts = [document_text(r[4], r[3], r[5], r[6], r[2], r[7], r[8]) for r in rows]
        hashes = [document_hash(text) for text in texts]
        unique = dict(zip(hashes, texts, strict=True))
        self.report.requests += len(rows)
        self.report.documents += len(unique)
        if self.dry_run:
            self.move(project, rows[-1][1], rows[-1][0])
            return len(rows)
        vectors = self.embed_missing(unique) if self.embeds else {}
        self.report.embedded += len(vectors)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                INSERT_DOCUMENTS, {"hashes": list(unique), "texts": list(unique.values())}
            )
            if vectors:
                cursor.execute(INSERT_EMBEDDINGS, {
                    "model": self.model, "dim": self.provider.dim, "hashes": list(vectors),
                    "vectors": [vector_literal(v) for v in vectors.values()],
                })  # fmt: skip
            cursor.execute(INSERT_REQUEST_DOCUMENTS, {
                "project": project.pk, "event_ids": [r[0] for r in rows],
                "times": [r[1] for r in rows], "services": [r[2] for r in rows], "hashes": hashes,
            })  # fmt: skip
            self.move(project, rows[-1][1], rows[-1][0])
        return len(rows)

    def embed_missing(self, unique: dict[str, str]) -> dict[str, list[float]]:
        with connection.cursor() as cursor:
            cursor.execute(MISSING_EMBEDDINGS, {"hashes": list(unique), "model": self.model})
            missing = [row[0] for row in cursor.fetchall()]
        if not missing:
            return {}
        vectors = self.provider.embed([unique[h] for h in missing])
        return dict(zip(missing, vectors, strict=True))
