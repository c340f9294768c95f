"""`make bench-sketches`: the cost of merging latency sketches, with and without pgvector.

One scratch embedded PostgreSQL holds both forms of the same 100,000 sketches (40
occupied buckets each, as a busy endpoint-hour has): pgvector's sparsevec merged by
sum(vector), and the bigint[] pairs of a database without pgvector merged by the
apm_sketch_merge aggregate of migration 0003. Same server, same run: the ratio is the
figure. Writes reports/bench/sketches.json.
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from apm_platform.embedded_db import EmbeddedPostgres
from apm_platform.processes import free_port
from observability.analytics.sketches import ARRAYS, PGVECTOR, SketchStore
from scripts.bench.report import REPORTS, write_report

# The migration's own definition of the aggregate (its module name starts with a digit).
HOURLY_ROLLUPS = importlib.import_module("observability.migrations.0003_hourly_cagg")

# The same sketches twice, in a column named `sketch` as in the rollups.
VECTOR_SKETCHES = """
CREATE TABLE vector_sketches AS
SELECT (SELECT format('{%%s}/1024', string_agg(b || ':' || (1 + (g + b) %% 7), ',' ORDER BY b))
        FROM generate_series(280 + g %% 20, 319 + g %% 20) AS b)::sparsevec AS sketch
FROM generate_series(1, %(rows)s) AS g
"""
ARRAY_SKETCHES = """
CREATE TABLE array_sketches AS
SELECT (SELECT array_agg(ARRAY[b, 1 + (g + b) %% 7]::bigint[] ORDER BY b)
        FROM generate_series(280 + g %% 20, 319 + g %% 20) AS b) AS sketch
FROM generate_series(1, %(rows)s) AS g
"""
MERGE_ALL = "SELECT {merge} FROM {table}"


def best_of(conn, store: SketchStore, table: str, runs: int) -> tuple[float, object]:
    query = sql.SQL(MERGE_ALL).format(
        merge=sql.SQL(store.merge_for_python), table=sql.Identifier(table)
    )
    timings, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = conn.execute(query, binary=True).fetchone()[0]
        timings.append(time.perf_counter() - started)
    return min(timings), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", default=str(REPORTS / "sketches.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sketches-") as scratch:
        server = EmbeddedPostgres(data_dir=Path(scratch) / "pg", port=free_port())
        server.start()
        try:
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION vector")
                for statement in HOURLY_ROLLUPS.ARRAY_SKETCH_FUNCTIONS:
                    conn.execute(statement)
                for table in (VECTOR_SKETCHES, ARRAY_SKETCHES):
                    conn.execute(table, {"rows": args.rows})
                conn.execute("VACUUM ANALYZE")
                vector_s, vector_sum = best_of(conn, PGVECTOR, "vector_sketches", args.runs)
                array_s, array_sum = best_of(conn, ARRAYS, "array_sketches", args.runs)
        finally:
            server.stop()
    if not np.array_equal(PGVECTOR.counts(vector_sum), ARRAYS.counts(array_sum)):
        raise RuntimeError("the two merges disagree")
    write_report({
        "rows": args.rows,
        "pgvector_merge_us_per_row": round(vector_s / args.rows * 1e6, 2),
        "array_merge_us_per_row": round(array_s / args.rows * 1e6, 2),
        "array_over_pgvector": round(array_s / vector_s, 1),
    }, Path(args.output))  # fmt: skip


if __name__ == "__main__":
    main()
