#!/usr/bin/env bash
# The drills' driver for the local cluster (make cluster-local): every operation goes
# through scripts/cluster/local.sh, which knows the processes, their environment and
# ports (scripts/cluster/local-env.sh). Sourced by lib.sh.

# shellcheck source=../cluster/local-env.sh
source "${ROOT}/scripts/cluster/local-env.sh"
LOCAL_CLUSTER="${ROOT}/scripts/cluster/local.sh"

driver_require() {
    "${LOCAL_CLUSTER}" running "db-$(current_primary)" \
        || { echo "the local cluster is not running: make cluster-local" >&2; exit 2; }
}

driver_current_primary() {
    current_primary
}

driver_replicas() {
    local node primary
    primary="$(current_primary)"
    for node in "${DB_NODES[@]}"; do
        [[ "${node}" == "${primary}" ]] || echo "${node}"
    done
}

# Superuser SQL on instance NODE, unaligned output.
driver_db_sql() {
    "${LOCAL_CLUSTER}" psql "$1" -c "$2"
}

driver_db_kill() {
    "${LOCAL_CLUSTER}" kill "db-$1"
}

driver_db_stop() {
    "${LOCAL_CLUSTER}" stop "db-$1"
}

driver_db_start() {
    "${LOCAL_CLUSTER}" start "db-$1"
}

driver_db_running() {
    "${LOCAL_CLUSTER}" running "db-$1"
}

# The data directory of a stopped instance is gone (its volume, in the containers).
driver_db_destroy() {
    local data
    data="$(db_data_dir "$1")"
    find "${data}" -mindepth 1 -delete
}

# pgbackrest restore into NODE's (empty) data directory, on the DATA node.
driver_db_restore() {
    "${LOCAL_CLUSTER}" pgbackrest-data "$1" --stanza=apm restore
}

# The replicas' slots and pg_hba.conf on a new primary (shipped primary-setup.sh).
driver_primary_setup() {
    "${LOCAL_CLUSTER}" primary-setup "$1"
}

# NODE is the primary from now on: the database side of pgBackRest and the repository
# host are restarted pointing at it (pg1-path, pg1-port, socket), as are the replicas'
# PRIMARY_PORT at their next start.
driver_set_primary() {
    "${LOCAL_CLUSTER}" set-primary "$1"
    "${LOCAL_CLUSTER}" stop pgbackrest-db pgbackrest
    "${LOCAL_CLUSTER}" start pgbackrest-db pgbackrest
}

# Restart replica NODE so that it streams from the current primary.
driver_follow() {
    "${LOCAL_CLUSTER}" stop "db-$1"
    "${LOCAL_CLUSTER}" start "db-$1"
}

# pgbackrest on the repository host (CONTROL).
driver_pgbackrest() {
    "${LOCAL_CLUSTER}" pgbackrest-repo "$@"
}

driver_s3_stop() {
    "${LOCAL_CLUSTER}" stop s3
}

driver_s3_start() {
    "${LOCAL_CLUSTER}" start s3
}

driver_s3_ready() {
    curl -sk --max-time 5 -o /dev/null "https://127.0.0.1:${PORT_S3_HTTPS}/"
}

driver_prometheus() {
    curl -sf --max-time 10 "http://127.0.0.1:${PORT_PROMETHEUS}$1"
}

# How the app finds the primary (DATABASE_URL of the APP node): every instance, in order,
# with target_session_attrs=read-write, so libpq connects to whichever accepts writes.
# Over TLS, verifying the deployment certificate.
driver_writer_dsn() {
    local passfile="${STATE}/app/writer.pgpass"
    mkdir -p "${STATE}/app"
    (umask 077 && printf '*:*:apm:apm_writer:%s\n' "$(tr -d '\n' < "${STATE}/secrets/db_writer_password")" > "${passfile}")
    echo "host=127.0.0.1,127.0.0.1,127.0.0.1 port=${PORT_DB_PRIMARY},${PORT_DB_REPLICA1},${PORT_DB_REPLICA2}" \
         "dbname=apm user=apm_writer passfile=${passfile} target_session_attrs=read-write" \
         "sslmode=verify-full sslrootcert=${STATE}/certs/public.crt connect_timeout=3"
}

driver_app_running() {
    "${LOCAL_CLUSTER}" running nginx && "${LOCAL_CLUSTER}" running web
}

driver_app_url() {
    echo "https://localhost:${PORT_APP_HTTPS}"
}

driver_app_ca() {
    echo "${STATE}/certs/public.crt"
}

driver_app_api_key_file() {
    echo "${STATE}/app/drill-api-key"
}
