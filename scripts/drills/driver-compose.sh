#!/usr/bin/env bash
# The drills' driver for the cluster's Compose stacks (make cluster-up): DATA, CONTROL and
# APP, each reached with `docker compose` on its own Docker engine (DOCKER_CONTEXT_DATA,
# _CONTROL, _APP: `docker context` names; by default the current engine runs all three).
# Sourced by lib.sh. Not run here (no Docker engine): see docs/DEPLOYMENT.md.

CLUSTER_ENV="${ROOT}/docker/cluster/.env.cluster"

compose() {
    local node="$1" context_var
    shift
    context_var="DOCKER_CONTEXT_${node^^}"
    docker ${!context_var:+--context "${!context_var}"} compose \
        -f "${ROOT}/docker/cluster/docker-compose.${node}.yml" --env-file "${CLUSTER_ENV}" "$@"
}

cluster_setting() {
    sed -n "s/^$1=//p" "${CLUSTER_ENV}"
}

driver_require() {
    if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
        echo "TARGET=compose needs a Docker engine with the Compose plugin; none is reachable here (TARGET=local runs the local cluster)." >&2
        exit 2
    fi
    [[ -f "${CLUSTER_ENV}" ]] || { echo "no ${CLUSTER_ENV}: make cluster-config" >&2; exit 2; }
}

# The instance that is the primary now: the service named in DB_PRIMARY_SERVICE, which
# the replicas follow (docker-compose.data.yml), kept in a file beside the env file.
PRIMARY_FILE="${ROOT}/docker/cluster/.drill-primary"

driver_current_primary() {
    if [[ -s "${PRIMARY_FILE}" ]]; then cat "${PRIMARY_FILE}"; else echo primary; fi
}

driver_replicas() {
    local node primary
    primary="$(driver_current_primary)"
    for node in primary replica1 replica2; do
        [[ "${node}" == "${primary}" ]] || echo "${node}"
    done
}

driver_db_sql() {
    compose data exec -T "db-$1" psql -X -q -U postgres -d apm -At -v ON_ERROR_STOP=1 -c "$2"
}

driver_db_kill() {
    compose data kill -s SIGKILL "db-$1"
}

driver_db_stop() {
    compose data stop "db-$1"
}

driver_db_start() {
    DB_PRIMARY_SERVICE="db-$(driver_current_primary)" compose data up -d --no-deps "db-$1"
}

driver_db_running() {
    [[ -n "$(compose data ps -q --status running "db-$1")" ]]
}

driver_db_destroy() {
    compose data run --rm --no-deps --entrypoint bash "db-$1" -c 'find /home/postgres/pgdata/data -mindepth 1 -delete'
}

driver_db_restore() {
    compose data run --rm --no-deps --entrypoint pgbackrest-secrets "db-$1" --stanza=apm restore
}

driver_primary_setup() {
    compose data exec -T -e REPLICA_SLOTS="$(driver_replicas | tr '\n' ',' | sed 's/,$//')" "db-$1" \
        bash /docker-entrypoint-initdb.d/010_replication.sh
    driver_db_sql "$1" "SELECT pg_reload_conf()" >/dev/null
}

# The stack's pgbackrest-db serves db-primary's volume only: after a failover the backups
# need it re-pointed at the new primary's volume, which this driver cannot do.
driver_set_primary() {
    echo "$1" > "${PRIMARY_FILE}"
    [[ "$1" == primary ]] || log "WARNING: pgbackrest-db still serves db-primary's volume; backups of $1 need it re-pointed"
}

driver_follow() {
    compose data stop "db-$1"
    driver_db_start "$1"
}

driver_pgbackrest() {
    compose control exec -T pgbackrest pgbackrest-secrets "$@"
}

driver_s3_stop() {
    compose control stop minio
}

driver_s3_start() {
    compose control start minio
}

driver_s3_ready() {
    [[ "$(compose control ps --format '{{.Health}}' minio)" == healthy ]]
}

driver_prometheus() {
    compose control exec -T prometheus wget -qO- "http://127.0.0.1:9090$1"
}

# As the app's DATABASE_URL could be: every instance, target_session_attrs=read-write.
driver_writer_dsn() {
    local ip passfile="${ROOT}/docker/secrets/drill_writer.pgpass"
    ip="$(cluster_setting DATA_NODE_IP)"
    (umask 077 && printf '*:*:apm:apm_writer:%s\n' "$(tr -d '\n' < "${ROOT}/docker/secrets/db_writer_password")" > "${passfile}")
    echo "host=${ip},${ip},${ip}" \
         "port=$(cluster_setting DB_PRIMARY_PORT),$(cluster_setting DB_REPLICA1_PORT),$(cluster_setting DB_REPLICA2_PORT)" \
         "dbname=apm user=apm_writer passfile=${passfile} target_session_attrs=read-write" \
         "sslmode=verify-ca sslrootcert=${ROOT}/docker/certs/public.crt connect_timeout=3"
}

driver_app_running() {
    [[ -n "$(compose app ps -q --status running web)" ]]
}

driver_app_url() {
    echo "https://$(cluster_setting APP_NODE_IP):$(cluster_setting APP_HTTPS_PORT)"
}

driver_app_ca() {
    echo "${ROOT}/docker/certs/public.crt"
}

# An ingest key for the drills' project, made once by the app's own command.
driver_app_api_key_file() {
    local file="${ROOT}/docker/secrets/drill_api_key"
    if [[ ! -s "${file}" ]]; then
        (umask 077 && compose app exec -T web python manage.py create_api_key --project drills \
            --scopes ingest,read --name drills | tail -1 > "${file}")
    fi
    echo "${file}"
}
