-- pgvector: the latency sketches (sparsevec) and search embeddings. Created here by the
-- superuser, because apm_writer, which runs the migrations, may not create extensions.
CREATE EXTENSION IF NOT EXISTS vector;
