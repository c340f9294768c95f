#!/usr/bin/env bash
# Roles: the app writes as apm_writer (owner of its schema); dashboards and ad-hoc
# queries read as apm_reader. Passwords come from Docker secrets, never from this file.
set -euo pipefail

writer_password="$(cat /run/secrets/db_writer_password)"
reader_password="$(cat /run/secrets/db_reader_password)"
replication_password="$(cat /run/secrets/db_replication_password)"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v writer_password="$writer_password" -v reader_password="$reader_password" \
    -v replication_password="$replication_password" <<'SQL'
CREATE ROLE apm_writer LOGIN PASSWORD :'writer_password';
CREATE ROLE apm_reader LOGIN PASSWORD :'reader_password';
GRANT CONNECT, CREATE ON DATABASE apm TO apm_writer;
GRANT CONNECT ON DATABASE apm TO apm_reader;
ALTER SCHEMA public OWNER TO apm_writer;
GRANT USAGE ON SCHEMA public TO apm_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE apm_writer IN SCHEMA public GRANT SELECT ON TABLES TO apm_reader;
-- The streaming replicas connect as this role (pg_hba allows it from the data network).
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'replication_password';
SQL
