"""Search over requests: by meaning (pgvector HNSW), by words (full-text), or both.

Semantic: the query's embedding against document embeddings of the same model, by
cosine distance through the HNSW index, then the project's requests that read as the
nearest documents. Keyword: websearch_to_tsquery over the documents' tsvector (GIN).
Hybrid: reciprocal rank fusion of the two rankings (score = sum of 1 / (60 + rank)).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from psycopg import sql

from observability.ai import Provider, vector_literal
from observability.models import ApiRequest

MODES = ("semantic", "keyword", "hybrid")

RRF_K = 60
# Hybrid search fuses this many hits of each ranking (at least the results wanted).
HYBRID_DEPTH = 20
# Documents ranked per search: many requests share a document, so a few documents give
# enough requests; the filters run inside the candidate scans, so every candidate counts.
CANDIDATES_PER_RESULT = 5
MIN_CANDIDATES = 50

# Nearest documents that the project's requests (in the window) read as. The project
# filter runs inside the HNSW scan: with pgvector's iterative scans the index keeps
# walking until enough documents pass it (bounded by hnsw.max_scan_tuples), so a small
# project finds its nearest documents however much other projects hold.
NEAREST_BY_INDEX = """
SELECT e.doc_hash, e.embedding::vector({dim}) <=> %(vector)s::vector({dim}) AS distance
FROM apm_embedding AS e
WHERE e.model = %(model)s AND e.dim = {dim}
  AND EXISTS (SELECT 1 FROM apm_request_document AS r
              WHERE r.doc_hash = e.doc_hash AND r.project_id = %(project)s {filters})
ORDER BY e.embedding::vector({dim}) <=> %(vector)s::vector({dim})
LIMIT %(candidates)s
"""
# When the index scan gives too few (an approximate graph may end its walk before it
# reaches a project's few documents): every document of the project's requests in the
# window, at most APM_SEARCH_MAX_DOCUMENTS, compared exactly.
NEAREST_EXACTLY = """
SELECT e.doc_hash, e.embedding::vector({dim}) <=> %(vector)s::vector({dim}) AS distance
FROM (SELECT DISTINCT r.doc_hash FROM apm_request_document AS r
      WHERE r.project_id = %(project)s {filters} LIMIT %(max_documents)s) AS d
JOIN apm_embedding AS e ON e.doc_hash = d.doc_hash AND e.model = %(model)s AND e.dim = {dim}
ORDER BY distance
LIMIT %(candidates)s
"""
# The latest requests reading as each document `d` of a ranked set (LATERAL, in the order
# of the (doc_hash, project_id, time) index).
LATEST_REQUESTS_OF_D = """
CROSS JOIN LATERAL (
    SELECT r.event_id, r.time FROM apm_request_document AS r
    WHERE r.doc_hash = d.doc_hash AND r.project_id = %(project)s {filters}
    ORDER BY r.time DESC
    LIMIT %(limit)s
) AS r"""
# Then the latest requests of each nearest document.
REQUESTS_OF_NEAREST = """
WITH nearest AS MATERIALIZED ({nearest})
SELECT r.event_id, r.time, 1 - d.distance AS score
FROM nearest AS d"""
REQUESTS_OF_NEAREST += LATEST_REQUESTS_OF_D + """
ORDER BY d.distance, r.time DESC
LIMIT %(limit)s
"""
NEAREST = REQUESTS_OF_NEAREST.replace("{nearest}", NEAREST_BY_INDEX)

# Documents matching the words among those the project's requests (in the window) read
# as, at most APM_SEARCH_MAX_DOCUMENTS of them ranked (a common word matches most
# documents: the bound keeps the cost fixed), then the latest requests of the best.
KEYWORD = """
WITH matching AS MATERIALIZED (
    SELECT d.doc_hash, d.search
    FROM apm_document AS d
    WHERE d.search @@ websearch_to_tsquery('simple', %(q)s)
      AND EXISTS (SELECT 1 FROM apm_request_document AS r
                  WHERE r.doc_hash = d.doc_hash AND r.project_id = %(project)s {filters})
    LIMIT %(max_documents)s
), best AS MATERIALIZED (
    SELECT doc_hash, ts_rank_cd(search, websearch_to_tsquery('simple', %(q)s)) AS score
    FROM matching
    ORDER BY score DESC
    LIMIT %(candidates)s
)
SELECT r.event_id, r.time, d.score
FROM best AS d"""
KEYWORD += LATEST_REQUESTS_OF_D + """
ORDER BY d.score DESC, r.time DESC
LIMIT %(limit)s
"""

EMBEDDING_OF_REQUEST = """
SELECT e.embedding::text, r.doc_hash FROM apm_request_document AS r
JOIN apm_embedding AS e ON e.doc_hash = r.doc_hash AND e.model = %(model)s
WHERE r.project_id = %(project)s AND r.event_id = %(event_id)s
ORDER BY r.time DESC LIMIT 1
"""


@dataclasses.dataclass(frozen=True)
class SearchFilters:
    service: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def sql(self) -> tuple[sql.Composable, dict]:
        clauses, params = [], {}
        if self.service is not None:
            clauses.append(sql.SQL("AND r.service = %(service)s"))
            params["service"] = self.service
        if self.start is not None:
            clauses.append(sql.SQL("AND r.time >= %(start)s"))
            params["start"] = self.start
        if self.end is not None:
            clauses.append(sql.SQL("AND r.time < %(end)s"))
            params["end"] = self.end
        return sql.SQL(" ").join(clauses), params


Hit = tuple[uuid.UUID, datetime, float]  # event_id, time, score


def find(connection: BaseDatabaseWrapper, provider: Provider | None, project_id: int,
         text: str, mode: str, filters: SearchFilters, limit: int) -> list[Hit]:  # fmt: skip
    """The best `limit` hits for `text` (a provider is needed unless mode is keyword)."""
    if mode == "keyword":
        return keyword(connection, project_id, text, filters, limit)
    vector = provider.embed([text], query=True)[0]
    depth = limit if mode == "semantic" else max(limit, HYBRID_DEPTH)
    hits = semantic(connection, provider, project_id, vector, filters, depth)
    if mode == "hybrid":
        words = keyword(connection, project_id, text, filters, depth)
        hits = hybrid(hits, words, limit)
    return hits


def default_start() -> datetime:
    """Searches without a start look this far back (APM_SEARCH_DEFAULT_DAYS)."""
    return timezone.now() - timedelta(days=settings.APM_SEARCH_DEFAULT_DAYS)


def similar(connection: BaseDatabaseWrapper, provider: Provider, project_id: int,
            event_id: uuid.UUID, limit: int) -> list[Hit] | None:  # fmt: skip
    """The requests nearest to one request (within the default window); None until the
    backfill has embedded it."""
    vector = embedding_of_request(connection, provider, project_id, event_id)
    if vector is None:
        return None
    window = SearchFilters(start=default_start())
    hits = semantic(connection, provider, project_id, vector, window, limit + 1)
    return [hit for hit in hits if hit[0] != event_id][:limit]


def requests_of(connection: BaseDatabaseWrapper, project_id: int, hits: list[Hit]) -> list:
    """The request records of the hits, in hit order, each with its `score`; read from the
    same database as the hits (a replica may lag another)."""
    if not hits:
        return []
    times = [hit[1] for hit in hits]
    # The time bounds let PostgreSQL skip every daily partition the hits are not in.
    rows = ApiRequest.objects.using(connection.alias).filter(
        project_id=project_id, time__gte=min(times), time__lte=max(times),
        pk__in=[(project_id, hit[0], hit[1]) for hit in hits],
    )  # fmt: skip
    by_key = {(row.event_id, row.time): row for row in rows}
    found = []
    for event_id, time, score in hits:
        row = by_key.get((event_id, time))
        if row is not None:  # gone since (retention, delete)
            row.score = score
            found.append(row)
    return found


def semantic(connection: BaseDatabaseWrapper, provider: Provider, project_id: int,
             vector: list[float], filters: SearchFilters, limit: int) -> list[Hit]:  # fmt: skip
    candidates = _candidates(limit)
    where, params = filters.sql()
    params.update(vector=vector_literal(vector), model=provider.model, project=project_id,
                  candidates=candidates, limit=limit,
                  max_documents=settings.APM_SEARCH_MAX_DOCUMENTS)  # fmt: skip
    dim = sql.SQL(str(int(provider.dim)))
    by_index, exactly = (
        sql.SQL(REQUESTS_OF_NEAREST).format(
            nearest=sql.SQL(nearest).format(dim=dim, filters=where), filters=where
        )
        for nearest in (NEAREST_BY_INDEX, NEAREST_EXACTLY)
    )
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        # The scan goes on past documents of other projects (iterative scan, relaxed
        # order: the outer ORDER BY sorts again), for at most max_scan_tuples index tuples.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', %s, true)",
            [str(max(settings.APM_SEARCH_EF_SEARCH, candidates)),
             str(settings.APM_SEARCH_MAX_SCAN_TUPLES)],
        )  # fmt: skip
        cursor.execute(by_index, params)
        rows = cursor.fetchall()
        if len(rows) < limit:
            cursor.execute(exactly, params)
            rows = cursor.fetchall()
        return [(row[0], row[1], float(row[2])) for row in rows]


def _candidates(limit: int) -> int:
    return max(limit * CANDIDATES_PER_RESULT, MIN_CANDIDATES)


def keyword(connection: BaseDatabaseWrapper, project_id: int, text: str,
            filters: SearchFilters, limit: int) -> list[Hit]:  # fmt: skip
    where, params = filters.sql()
    params.update(q=text, project=project_id, limit=limit, candidates=_candidates(limit),
                  max_documents=settings.APM_SEARCH_MAX_DOCUMENTS)  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL(KEYWORD).format(filters=where), params)
        return [(row[0], row[1], float(row[2])) for row in cursor.fetchall()]


def hybrid(semantic_hits: list[Hit], keyword_hits: list[Hit], limit: int) -> list[Hit]:
    """Reciprocal rank fusion: robust to the two scores having nothing in common."""
    fused: dict[tuple, float] = {}
    for hits in (semantic_hits, keyword_hits):
        for rank, (event_id, time, _) in enumerate(hits, start=1):
            fused[(event_id, time)] = fused.get((event_id, time), 0.0) + 1 / (RRF_K + rank)
    ranked = sorted(fused.items(), key=lambda item: (-item[1], -item[0][1].timestamp()))
    return [(event_id, time, score) for (event_id, time), score in ranked[:limit]]


def embedding_of_request(connection: BaseDatabaseWrapper, provider: Provider, project_id: int,
                         event_id: uuid.UUID) -> list[float] | None:  # fmt: skip
    with connection.cursor() as cursor:
        params = {"model": provider.model, "project": project_id, "event_id": event_id}
        cursor.execute(EMBEDDING_OF_REQUEST, params)
        row = cursor.fetchone()
    return [float(x) for x in row[0].strip("[]").split(",")] if row else None
