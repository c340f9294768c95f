#!/usr/bin/env bash
# Roles: the app writes as apm_writer (owner of its schema); the replicas, dashboards and
# ad-hoc queries read as apm_reader; postgres-exporter monitors as apm_monitor;
# streaming replicas connect as replicator. Passwords come from Docker secrets.
set -euo pipefail

secrets_dir="${SECRETS_DIR:-/run/secrets}"
writer_password="$(cat "${secrets_dir}/db_writer_password")"
reader_password="$(cat "${secrets_dir}/db_reader_password")"
replication_password="$(cat "${secrets_dir}/db_replication_password")"
monitor_password="$(cat "${secrets_dir}/db_monitor_password")"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v writer_password="$writer_password" -v reader_password="$reader_password" \
    -v replication_password="$replication_password" -v monitor_password="$monitor_password" <<'SQL'
CREATE ROLE apm_writer LOGIN PASSWORD :'writer_password';
CREATE ROLE apm_reader LOGIN PASSWORD :'reader_password';
GRANT CONNECT, CREATE ON DATABASE apm TO apm_writer;
-- The app reads shared_preload_libraries to choose its analytics backend (TimescaleDB or
-- not), a setting only superusers and pg_read_all_settings may read: without this its
-- system check fails and so does migrate (found by the local cluster).
GRANT pg_read_all_settings TO apm_writer;
GRANT CONNECT ON DATABASE apm TO apm_reader;
-- The app reads from a replica only while its WAL receiver streams, which it reads from
-- pg_stat_wal_receiver on the replica as apm_reader: without pg_read_all_stats the status
-- is hidden (NULL), no replica is ever usable, and every read goes to the primary (found
-- by the step runner, scripts/step3_test.sh).
GRANT pg_read_all_stats TO apm_reader;
ALTER SCHEMA public OWNER TO apm_writer;
GRANT USAGE ON SCHEMA public TO apm_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE apm_writer IN SCHEMA public GRANT SELECT ON TABLES TO apm_reader;
CREATE ROLE apm_monitor LOGIN PASSWORD :'monitor_password' IN ROLE pg_monitor;
-- The streaming replicas connect as this role (pg_hba: docker/cluster/replica/primary-setup.sh).
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'replication_password';
SQL
