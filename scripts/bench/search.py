"""`make bench-search`: HNSW build time, query latency through the API, recall@10.

One run: a scratch embedded PostgreSQL; 100,000 synthetic 768-dimension embeddings in
clusters (each the document of one request), loaded with COPY; the HNSW index built
(timed); then top-10 semantic searches through /api/v1/search/ (gunicorn, 2 workers),
the query text embedded by a local server speaking Gemini's batchEmbedContents (it maps
each query to a fresh point of a cluster), and recall@10 of the API's answers against
an exact scan (numpy) of the project's vectors. Two projects share the index: a large
one (99% of the vectors) and a small one (1%), each searched with its own key, so the
small project's recall shows whether the other tenant's volume costs it results.
Writes reports/bench/search.json and prints it as the last line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg

from apm_platform.processes import (
    Gunicorn,
    manage,
    scratch_postgres,
)
from observability.ai.fake_server import FakeGemini
from scripts.bench.report import REPORTS, write_report

DIM, CLUSTERS, SPREAD = 768, 200, 0.35
HNSW_INDEX = "apm_embedding_hnsw_768"


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


class Vectors:
    """Clustered unit vectors: random centroids, points scattered around them."""

    def __init__(self, count: int, seed: int = 7):
        self.rng = np.random.default_rng(seed)
        self.centroids = unit(self.rng.normal(size=(CLUSTERS, DIM)))
        members = self.rng.integers(0, CLUSTERS, size=count)
        noise = self.rng.normal(scale=SPREAD / np.sqrt(DIM), size=(count, DIM))
        self.data = unit(self.centroids[members] + noise).astype(np.float32)

    def query(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(10_000 + n)
        noise = rng.normal(scale=SPREAD / np.sqrt(DIM), size=DIM)
        return unit(self.centroids[n % CLUSTERS] + noise).astype(np.float32)


def pgvector_binary(vector: np.ndarray) -> bytes:
    """pgvector's binary wire form: dimensions, a reserved field, big-endian float4s."""
    return struct.pack(">HH", len(vector), 0) + vector.astype(">f4").tobytes()


SMALL_EVERY = 100  # one vector in this many belongs to the small project


def load(url: str, vectors: Vectors, projects: list[int]) -> list[uuid.UUID]:
    """Vector i is the document of request i, of project projects[i]."""
    count = len(vectors.data)
    now = datetime.now(UTC) - timedelta(hours=1)
    event_ids = [uuid.uuid4() for _ in range(count)]
    times = [now - timedelta(seconds=i) for i in range(count)]
    hashes = [f"{i:064x}" for i in range(count)]  # the shape of a SHA-256 hex digest
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP INDEX {HNSW_INDEX}")  # built after the load, and timed
        with cursor.copy("COPY api_request (time, project_id, service, endpoint, method, "
                         "status_code, latency_ms, event_id) FROM STDIN") as copy:  # fmt: skip
            for i in range(count):
                copy.write_row((times[i], projects[i], f"svc{i % 20}", f"/e{i % 50}", "GET",
                                200, 10.0, event_ids[i]))  # fmt: skip
        with cursor.copy("COPY apm_document (doc_hash, text, search) FROM STDIN") as copy:
            for i in range(count):
                copy.write_row((hashes[i], f"bench document {i}", ""))
        with cursor.copy("COPY apm_request_document (event_id, time, project_id, service, "
                         "doc_hash) FROM STDIN") as copy:  # fmt: skip
            for i in range(count):
                copy.write_row((event_ids[i], times[i], projects[i], f"svc{i % 20}", hashes[i]))
        with cursor.copy("COPY apm_embedding (model, doc_hash, dim, embedding) "
                         "FROM STDIN (FORMAT BINARY)") as copy:  # fmt: skip
            copy.set_types(["text", "text", "int2", "bytea"])  # bytea: vector's binary form
            for i in range(count):
                copy.write_row(
                    ("gemini-embedding-001", hashes[i], DIM, pgvector_binary(vectors.data[i]))
                )
    return event_ids


def build_index(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        # As autovacuum would after a load this size: the planner needs the statistics.
        conn.execute(
            "VACUUM ANALYZE apm_embedding, apm_request_document, apm_document, api_request"
        )
        # An operator's setting for index builds: the graph fits in memory, the build is fast.
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        began = time.perf_counter()
        conn.execute(
            f"CREATE INDEX {HNSW_INDEX} ON apm_embedding USING hnsw "
            "((embedding::vector(768)) vector_cosine_ops) WHERE dim = 768"
        )
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--output", default=str(REPORTS / "search.json"))
    args = parser.parse_args()

    vectors = Vectors(args.vectors)
    queries = {f"bench query {n}": vectors.query(n) for n in range(args.queries)}
    fake = FakeGemini(embedder=lambda text, dim: queries[text].tolist())
    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch, \
            scratch_postgres(Path(scratch)) as database:  # fmt: skip
        url = database.url()
        keys = {name: manage(url, "create_api_key", "--project", name).strip()
                for name in ("large", "small")}  # fmt: skip
        with psycopg.connect(url) as conn:
            ids = dict(conn.execute("SELECT slug, id FROM apm_project").fetchall())
        owner = ["small" if i % SMALL_EVERY == 0 else "large" for i in range(args.vectors)]
        print(f"loading {args.vectors:,} vectors...", file=sys.stderr)
        event_ids = load(url, vectors, [ids[name] for name in owner])
        build_s = build_index(url)
        print(f"HNSW built in {build_s:.1f}s", file=sys.stderr)
        position = {str(event_id): i for i, event_id in enumerate(event_ids)}

        # The read rate limit stays on (its cost is part of each search) but never binds.
        server = Gunicorn(url, Path(scratch) / "metrics", workers=2, DATABASE_CONN_MAX_AGE="60",
                          EMBEDDING_PROVIDER="gemini", GEMINI_API_KEY="bench",
                          GEMINI_BASE_URL=fake.url, APM_READ_RATE_LIMIT="1000000",
                          APM_READ_RATE_BURST="1000000")  # fmt: skip
        members = {name: np.array([i for i, o in enumerate(owner) if o == name])
                   for name in keys}  # fmt: skip
        latencies, recalls = [], {name: [] for name in keys}
        try:
            for name, key in keys.items():
                auth = {"Authorization": f"Bearer {key}"}
                with httpx.Client(base_url=server.url, timeout=60, headers=auth) as client:
                    for text in list(queries)[:10]:  # warm up both workers
                        client.get("/api/v1/search/", params={"q": text, "mode": "semantic"})
                    for text, query in queries.items():
                        began = time.perf_counter()
                        params = {"q": text, "mode": "semantic", "limit": 10}
                        response = client.get("/api/v1/search/", params=params)
                        if name == "large":
                            latencies.append((time.perf_counter() - began) * 1000)
                        response.raise_for_status()
                        found = {position[r["event_id"]] for r in response.json()["results"]}
                        own = members[name]
                        exact = set(own[np.argsort(-(vectors.data[own] @ query))[:10]].tolist())
                        recalls[name].append(len(found & exact) / 10)
        finally:
            server.stop()
            fake.close()

    write_report({
        "vectors": args.vectors,
        "dim": DIM,
        "build_s": round(build_s, 1),
        "query_p50_ms": round(statistics.median(latencies), 1),
        "query_p95_ms": round(statistics.quantiles(latencies, n=100)[94], 1),
        "recall_at_10": round(statistics.mean(recalls["large"]), 4),
        "recall_at_10_small_project": round(statistics.mean(recalls["small"]), 4),
        "small_project_share": 1 / SMALL_EVERY,
        "queries": len(latencies),
    }, Path(args.output))  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apm_platform.ci_settings")
    main()
