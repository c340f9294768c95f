"""apm_sketch_quantile(sketch, q): a percentile from a (merged) latency sketch, in SQL.

For Grafana's SQL panels and ad-hoc queries: the same percentile_disc reading of the
sketch as observability/analytics/sketch.py (a test checks they agree), without the
clamping to the exact min and max, which SQL users can apply with LEAST/GREATEST. The
sketch's constants (MIN_MS 0.01, GAMMA 1.018) are frozen here as the migration ran.
"""

from django.db import migrations

from observability.migrations._frozen import run_all, sketches_in_pgvector

QUANTILE = """
CREATE FUNCTION apm_sketch_quantile(sketch vector, q double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT AS $$
    WITH counts AS (
        SELECT bucket, n, sum(n) OVER (ORDER BY bucket) AS running, sum(n) OVER () AS total
        FROM unnest(sketch::real[]) WITH ORDINALITY AS c(n, bucket)
    )
    SELECT CASE WHEN bucket = 1 THEN 0.01::double precision
                ELSE 2 * 0.01 * power(1.018::double precision, bucket - 1) / (1 + 1.018)
           END
    FROM counts
    WHERE total > 0 AND running >= greatest(ceil(q * total - 1e-9), 1) - 1e-6
    ORDER BY bucket
    LIMIT 1
$$
"""


# The same reading of bigint[] pairs, where sketches are stored without pgvector.
QUANTILE_OF_PAIRS = """
CREATE FUNCTION apm_sketch_quantile(sketch bigint[], q double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH counts AS (
        SELECT sketch[i][1] AS bucket, sketch[i][2] AS n FROM generate_subscripts(sketch, 1) AS i
    ), cumulative AS (
        SELECT bucket, sum(n) OVER (ORDER BY bucket) AS running, sum(n) OVER () AS total
        FROM counts
    )
    SELECT CASE WHEN bucket = 1 THEN 0.01::double precision
                ELSE 2 * 0.01 * power(1.018::double precision, bucket - 1) / (1 + 1.018)
           END
    FROM cumulative
    WHERE total > 0 AND running >= greatest(ceil(q * total - 1e-9), 1) - 1e-6
    ORDER BY bucket
    LIMIT 1
$$
"""


def create_quantile_function(apps, schema_editor):
    in_pgvector = sketches_in_pgvector(schema_editor.connection)
    run_all(schema_editor, [QUANTILE if in_pgvector else QUANTILE_OF_PAIRS])


def drop_quantile_function(apps, schema_editor):
    run_all(schema_editor, [
        "DROP FUNCTION IF EXISTS apm_sketch_quantile(vector, double precision)",
        "DROP FUNCTION IF EXISTS apm_sketch_quantile(bigint[], double precision)",
    ])  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("observability", "0008_embeddings")]

    operations = [migrations.RunPython(create_quantile_function, drop_quantile_function)]
