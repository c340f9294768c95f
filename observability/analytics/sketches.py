"""How a database stores the latency sketches: pgvector's sparsevec, or plain arrays.

With pgvector (the default, and TimescaleDB's images have it), a sketch is a
`sparsevec(1024)` and merging is pgvector's `sum(vector)`, in C. A PostgreSQL without
pgvector (Debian's packages, some managed services) stores it as `bigint[]` pairs
[[bucket, count], ...] merged by a PL/pgSQL aggregate (`apm_sketch_merge`): the same
percentiles, more CPU per merged row (docs/ANALYTICS.md has the measured cost). Which
one a database uses was decided by migration 0003, by whether the server offers pgvector;
the column type tells it afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from django.db.backends.base.base import BaseDatabaseWrapper

from observability.analytics.sketch import BUCKETS


def _from_vector_send(binary: bytes) -> np.ndarray:
    """pgvector's binary form: a 4-byte header, then big-endian float4 counts."""
    return np.frombuffer(binary, dtype=">f4", offset=4).astype(np.float64)


def _from_pairs(pairs: list[list[int]]) -> np.ndarray:
    counts = np.zeros(BUCKETS)
    if pairs:
        array = np.asarray(pairs, dtype=np.int64)
        counts[array[:, 0] - 1] = array[:, 1]
    return counts


@dataclasses.dataclass(frozen=True)
class SketchStore:
    name: str
    column_type: str  # as format_type() writes it
    # SQL aggregates. `build` reads the (sketch_bucket, hits) rows of the raw aggregation;
    # `merge` merges stored sketches into a stored one; `merge_for_python` into what
    # `counts` reads. psycopg sees every % as a placeholder, hence %%s.
    build: str
    merge: str
    merge_for_python: str
    counts: Callable[[object], np.ndarray]
    # SLO queries (alerting/sli.py): `merge_filtered` merges the rows of a FILTER ({}) into
    # what `count_at_most` reads; `threshold_mask` is computed once per SLO row (from its
    # latency_threshold_ms), and `count_at_most` counts a merged sketch's requests in the
    # buckets up to the threshold's ({sketch}, {mask}).
    merge_filtered: str
    threshold_mask: str
    count_at_most: str
    # Embeddings follow the same choice (migration 0008): semantic search needs pgvector.
    has_pgvector: bool


PGVECTOR = SketchStore(
    name="pgvector",
    column_type=f"sparsevec({BUCKETS})",
    build="format('{%%s}/" + str(BUCKETS) + "', string_agg(sketch_bucket || ':' || hits, ','))"
    "::sparsevec",
    merge="sum(sketch::vector)::sparsevec",
    merge_for_python="vector_send(sum(sketch::vector))",
    counts=_from_vector_send,
    merge_filtered="sum(sketch::vector) FILTER (WHERE {})",
    # 1 for every bucket up to the threshold's, 0 above: an inner product counts them.
    threshold_mask="(array_fill(1::real, ARRAY[apm_sketch_index(latency_threshold_ms)]) || "
    f"array_fill(0::real, ARRAY[{BUCKETS} - apm_sketch_index(latency_threshold_ms)]))::vector",
    count_at_most="inner_product({sketch}, {mask})",
    has_pgvector=True,
)
ARRAYS = SketchStore(
    name="arrays",
    column_type="bigint[]",
    build="array_agg(ARRAY[sketch_bucket, hits]::bigint[] ORDER BY sketch_bucket)",
    merge="apm_sketch_merge(sketch)",
    merge_for_python="apm_sketch_merge(sketch)",
    counts=_from_pairs,
    merge_filtered="apm_sketch_merge(sketch) FILTER (WHERE {})",
    threshold_mask="apm_sketch_index(latency_threshold_ms)",
    count_at_most="apm_sketch_count_at_most({sketch}, {mask})",  # migration 0020
    has_pgvector=False,
)
STORES = {store.column_type.split("(")[0]: store for store in (PGVECTOR, ARRAYS)}

COLUMN_TYPE = """
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = to_regclass('apm_rollup_endpoint_hourly') AND attname = 'sketch'
"""

# database (host, port, name) -> store. A schema does not change its sketch type.
_of: dict[tuple, SketchStore] = {}


def of(connection: BaseDatabaseWrapper) -> SketchStore:
    params = connection.settings_dict
    database = (params["HOST"], params["PORT"], params["NAME"])
    if database not in _of:
        with connection.cursor() as cursor:
            cursor.execute(COLUMN_TYPE)
            row = cursor.fetchone()
        if row is None:
            raise RuntimeError("the rollup tables do not exist yet: migrate")
        _of[database] = STORES[row[0].split("(")[0]]
    return _of[database]
