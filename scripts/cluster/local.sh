#!/usr/bin/env bash
# The three nodes' roles as real processes on this machine (make cluster-local):
#   DATA     PostgreSQL 15 primary and two streaming replicas with TLS, the database
#            side of pgBackRest (`pgbackrest server`), a postgres-exporter per instance,
#            node-exporter
#   CONTROL  an S3 server (SeaweedFS) with the hot and cold buckets, the pgBackRest
#            repository host (mutual TLS, backup schedule), node-exporter with the backup
#            metrics, Prometheus with the shipped rules scraping everything over TLS
#   APP      migrate, gunicorn, run_jobs, Nginx TLS (see app_up)
# Each process runs the shipped file the container runs (scripts, pgBackRest configs,
# Prometheus config and rules, exporter web config), not a copy: what differs on one
# machine (paths, loopback ports) is passed as the environment or command line, as
# Compose passes volumes and ports. See scripts/cluster/local-env.sh for the layout.
#   scripts/cluster/local.sh up|down|status|clean
set -euo pipefail

# shellcheck source=local-env.sh
source "$(dirname "$0")/local-env.sh"
ROOT="${CLUSTER_ROOT}"
OPS_BIN="${ROOT}/.venv-ops/bin"
APP_PY="${ROOT}/.venv/bin/python"
CERTS="${STATE}/certs"
PGBR_CERTS="${CERTS}/pgbackrest"
WAIT_SECONDS="${CLUSTER_LOCAL_WAIT_SECONDS:-120}"

log() {
    echo "[cluster-local $(date -u +%H:%M:%S)] $*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# --- Processes ------------------------------------------------------------------------
# Each long-running process: its own session (so its children stop with it), as RUN_AS,
# with only the environment given (as a container has), output to log/<name>.log, its
# pid in run/<name>.pid.

pid_of() {
    local file="${STATE}/run/$1.pid"
    [[ -s "${file}" ]] && kill -0 "$(cat "${file}")" 2>/dev/null && cat "${file}"
}

is_running() {
    pid_of "$1" >/dev/null
}

as_server_user() {
    if [[ "$(id -u)" == 0 ]]; then
        setpriv --reuid="${RUN_AS}" --regid="${RUN_AS}" --init-groups -- "$@"
    else
        "$@"
    fi
}

base_env() {
    echo "PATH=${STATE}/bin:${PG_BIN}:/usr/local/bin:/usr/bin:/bin"
    echo "HOME=${STATE}/home"
    echo "LANG=C.UTF-8"
    echo "TZ=UTC"
}

# spawn NAME ENV_FUNCTION COMMAND...: ENV_FUNCTION prints NAME=value lines.
spawn() {
    local name="$1" env_function="$2"
    shift 2
    if is_running "${name}"; then
        log "${name}: already running (pid $(pid_of "${name}"))"
        return 0
    fi
    local -a environment
    mapfile -t environment < <(base_env; "${env_function}")
    local -a user=()
    local log_file="${STATE}/log/${name}.log"
    if [[ "$(id -u)" == 0 && -z "${SPAWN_AS_SELF:-}" ]]; then
        user=(setpriv --reuid="${RUN_AS}" --regid="${RUN_AS}" --init-groups --)
        # Its own log file, which it may reopen as /dev/stdout or /dev/stderr (Nginx does).
        touch "${log_file}"
        chown "${RUN_AS}:" "${log_file}"
    fi
    log "${name}: starting"
    # Every step execs the next, so the recorded pid is the process itself (a background
    # subshell is no process group leader, so setsid needs no fork).
    (
        cd "${SPAWN_CWD:-${STATE}}"
        exec setsid env -i "${environment[@]}" "${user[@]}" "$@" \
            < /dev/null >> "${log_file}" 2>&1
    ) &
    echo $! > "${STATE}/run/${name}.pid"
}

# stop_process NAME [SIGNAL] [GRACE]: signal the session, wait for it to end (at most GRACE
# seconds, 60), then KILL.
stop_process() {
    local name="$1" signal="${2:-TERM}" grace="${3:-60}" pid waited=0
    pid="$(pid_of "${name}")" || { rm -f "${STATE}/run/${name}.pid"; return 0; }
    log "${name}: stopping (SIG${signal})"
    kill -s "${signal}" -- "-${pid}" 2>/dev/null || kill -s "${signal}" "${pid}" 2>/dev/null || true
    while kill -0 "${pid}" 2>/dev/null; do
        if (( waited >= grace )); then
            log "${name}: still running after ${grace}s; SIGKILL"
            kill -s KILL -- "-${pid}" 2>/dev/null || true
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    rm -f "${STATE}/run/${name}.pid"
}

# wait_until DESCRIPTION SECONDS COMMAND...: a bounded wait with a clear failure.
wait_until() {
    local what="$1" timeout="$2" started
    shift 2
    started="$(date +%s)"
    # stdout only: a condition's own fatal error (die) must reach the terminal.
    until "$@" >/dev/null; do
        if (( $(date +%s) - started >= timeout )); then
            die "timed out after ${timeout}s waiting for ${what}"
        fi
        sleep 1
    done
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --- Preparation ------------------------------------------------------------------------

require_tools() {
    local missing=() tool
    for tool in "${PG_BIN}/postgres" /usr/bin/pgbackrest /usr/bin/prometheus \
                /usr/bin/prometheus-postgres-exporter /usr/bin/prometheus-node-exporter \
                /usr/sbin/nginx /usr/bin/curl /usr/bin/openssl /usr/bin/setpriv "${OPS_BIN}/weed" "${APP_PY}"; do
        [[ -x "${tool}" ]] || missing+=("${tool}")
    done
    if (( ${#missing[@]} > 0 )); then
        die "missing ${missing[*]}: run \`make cluster-local\` (it installs the Debian packages, .venv and .venv-ops)"
    fi
    if [[ "$(id -u)" != 0 && "${RUN_AS}" != postgres ]]; then
        die "run as root (the servers then run as postgres) or as the postgres user: pgBackRest reaches PostgreSQL by peer authentication as in the containers"
    fi
}

# Secrets and certificates made by the shipped bootstrap, under the state directory: the
# deployment certificate (names localhost, 127.0.0.1, apm-app, apm-data, apm-control),
# the pgBackRest CA with server "pgbackrest" and client "db" (plus the name localhost,
# which both hosts are here), the S3 server's certificate ("minio", localhost).
prepare_secrets() {
    APM_SECRETS_DIR="${STATE}/secrets" APM_CERTS_DIR="${CERTS}" \
        APM_SECRETS_GID="$(id -g "${RUN_AS}")" APM_PGBACKREST_CERT_EXTRA_SAN="DNS:localhost" \
        "${ROOT}/scripts/dev/bootstrap.sh" | sed 's/^/[bootstrap] /' >&2
}

# What each node's containers get under /run/secrets (the Compose files' secrets:).
link_node_secrets() {
    local node="$1" secret
    shift
    mkdir -p "${STATE}/${node}/secrets"
    for secret in "$@"; do
        ln -sfn "${STATE}/secrets/${secret}" "${STATE}/${node}/secrets/${secret}"
    done
}

# A directory laid out as the exporters' /etc/exporter/: web.yml is the shipped file.
exporter_dir() {
    local dir="${STATE}/$1/exporter"
    mkdir -p "${dir}"
    ln -sfn "${ROOT}/docker/monitoring/exporter-web.yml" "${dir}/web.yml"
    ln -sfn "${CERTS}/public.crt" "${dir}/tls.crt"
    ln -sfn "${CERTS}/private.key" "${dir}/tls.key"
}

prepare() {
    mkdir -p "${STATE}"/{run,log,bin,home,secrets,certs}
    # The images install these on the PATH under these names.
    ln -sfn "${ROOT}/docker/pgbackrest/pgbackrest-secrets.sh" "${STATE}/bin/pgbackrest-secrets"
    ln -sfn "${ROOT}/docker/backup/pgbackrest-cron.sh" "${STATE}/bin/pgbackrest-cron"
    ln -sfn "${ROOT}/docker/pgbackrest/entrypoint.sh" "${STATE}/bin/pgbackrest-entrypoint"
    prepare_secrets
    link_node_secrets data db_superuser_password db_writer_password db_reader_password \
        db_monitor_password db_replication_password
    link_node_secrets control pgbackrest_s3_secret pgbackrest_cipher_pass
    link_node_secrets app django_secret_key
    local node
    for node in "${DB_NODES[@]}"; do
        mkdir -p "$(dirname "$(db_data_dir "${node}")")" "$(db_socket_dir "${node}")" \
            "${STATE}/data/${node}/pgbackrest/"{log,lock,spool}
    done
    mkdir -p "${STATE}/control/"{s3,pgbackrest/log,pgbackrest/lock,metrics,prometheus/targets,prometheus/certs,prometheus/data}
    exporter_dir data
    exporter_dir control
    exporter_dir app
    if [[ "$(id -u)" == 0 ]]; then
        chown -R "${RUN_AS}:" "${STATE}"/{run,log,home,data,control}
        chmod 0750 "${STATE}"/data/*/pgdata 2>/dev/null || true
    fi
}

# --- DATA node ------------------------------------------------------------------------

# pgBackRest on the DATA node: docker/cluster/pgbackrest-db.conf, with what the DATA
# containers mount elsewhere given as PGBACKREST_* variables (which pgBackRest ranks above
# its config file). For the instance NODE: its data directory, socket and spool.
pgbackrest_db_env() {
    local node="$1"
    echo "PGBACKREST_CONFIG=${ROOT}/docker/cluster/pgbackrest-db.conf"
    echo "PGBACKREST_CMD=${STATE}/bin/pgbackrest-secrets"
    local repo
    for repo in 1 2; do
        echo "PGBACKREST_REPO${repo}_HOST=localhost"
        echo "PGBACKREST_REPO${repo}_HOST_PORT=${PORT_PGBACKREST_REPO}"
        echo "PGBACKREST_REPO${repo}_HOST_CA_FILE=${PGBR_CERTS}/ca.crt"
        echo "PGBACKREST_REPO${repo}_HOST_CERT_FILE=${PGBR_CERTS}/client.crt"
        echo "PGBACKREST_REPO${repo}_HOST_KEY_FILE=${PGBR_CERTS}/client.key"
    done
    echo "PGBACKREST_TLS_SERVER_ADDRESS=127.0.0.1"
    echo "PGBACKREST_TLS_SERVER_PORT=${PORT_PGBACKREST_DB}"
    echo "PGBACKREST_TLS_SERVER_CA_FILE=${PGBR_CERTS}/ca.crt"
    echo "PGBACKREST_TLS_SERVER_CERT_FILE=${PGBR_CERTS}/client.crt"
    echo "PGBACKREST_TLS_SERVER_KEY_FILE=${PGBR_CERTS}/client.key"
    echo "PGBACKREST_SPOOL_PATH=${STATE}/data/${node}/pgbackrest/spool"
    echo "PGBACKREST_LOG_PATH=${STATE}/data/${node}/pgbackrest/log"
    echo "PGBACKREST_LOCK_PATH=${STATE}/data/${node}/pgbackrest/lock"
    echo "PGBACKREST_PG1_PATH=$(db_data_dir "${node}")"
    echo "PGBACKREST_PG1_SOCKET_PATH=$(db_socket_dir "${node}")"
    echo "PGBACKREST_PG1_PORT=$(db_port "${node}")"
    echo "SECRETS_DIR=${STATE}/data/secrets"
}

# The options every instance gets: x-postgres-options of docker-compose.data.yml, with
# the certificate paths of this machine, then where this instance listens.
postgres_options() {
    local node="$1"
    printf -- '-c\n%s\n' \
        max_connections=200 \
        ssl=on \
        "ssl_cert_file=${CERTS}/public.crt" \
        "ssl_key_file=${CERTS}/private.key" \
        archive_mode=on \
        "archive_command=pgbackrest-secrets --stanza=apm archive-push %p" \
        "max_slot_wal_keep_size=${DB_MAX_SLOT_WAL_KEEP_SIZE:-10GB}" \
        hot_standby_feedback=on \
        "synchronous_standby_names=${DB_SYNCHRONOUS_STANDBY_NAMES:-}" \
        listen_addresses=127.0.0.1 \
        "port=$(db_port "${node}")" \
        "unix_socket_directories=$(db_socket_dir "${node}")"
}

# The image's entrypoint on first start: initdb with the superuser password, a database
# apm, then the initdb.d scripts that apply without TimescaleDB and pgvector (000 and
# 002 need the image's extensions): 001_roles.sh and primary-setup.sh, on a server that
# listens on its socket only.
init_primary() {
    local data socket port
    data="$(db_data_dir primary)"
    socket="$(db_socket_dir primary)"
    port="$(db_port primary)"
    [[ -s "${data}/PG_VERSION" ]] && return 0
    log "db-primary: initialising ${data}"
    mkdir -p "${data}"
    [[ "$(id -u)" == 0 ]] && chown "${RUN_AS}:" "${data}"
    local init_log="${STATE}/log/db-primary-initdb.log"
    touch "${init_log}"
    [[ "$(id -u)" == 0 ]] && chown "${RUN_AS}:" "${init_log}"
    as_server_user "${PG_BIN}/initdb" -D "${data}" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 --pwfile="${STATE}/data/secrets/db_superuser_password" \
        >> "${init_log}"
    as_server_user "${PG_BIN}/pg_ctl" -D "${data}" -w -t 60 -l "${init_log}" \
        -o "-c listen_addresses='' -c port=${port} -c unix_socket_directories=${socket}" start >/dev/null
    local -a init_env=(PATH="${PG_BIN}:/usr/bin:/bin" HOME="${STATE}/home" PGHOST="${socket}" PGPORT="${port}"
        PGDATA="${data}" POSTGRES_USER=postgres POSTGRES_DB=apm SECRETS_DIR="${STATE}/data/secrets"
        "REPLICA_SLOTS=replica1,replica2")
    as_server_user env -i "${init_env[@]}" psql -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE apm"
    as_server_user env -i "${init_env[@]}" bash "${ROOT}/docker/initdb/001_roles.sh"
    as_server_user env -i "${init_env[@]}" bash "${ROOT}/docker/cluster/replica/primary-setup.sh" >&2
    as_server_user "${PG_BIN}/pg_ctl" -D "${data}" -w -m fast stop >/dev/null
}

db_env() {
    pgbackrest_db_env "${DB_ENV_NODE}"
    if [[ "${DB_ENV_NODE}" != "$(current_primary)" ]]; then
        # x-replica-environment, pointing at whichever instance is the primary now.
        echo "PGDATA=$(db_data_dir "${DB_ENV_NODE}")"
        echo "PRIMARY_HOST=127.0.0.1"
        echo "PRIMARY_PORT=$(db_port "$(current_primary)")"
        echo "DB_TLS_CA_FILE=${CERTS}/public.crt"
        echo "REPLICA_SLOT=${DB_ENV_NODE}"
    fi
}

pg_ready() {
    "${PG_BIN}/pg_isready" -q -h 127.0.0.1 -p "$1"
}

start_db() {
    local node="$1" name="db-$1"
    local -a options
    mapfile -t options < <(postgres_options "${node}")
    DB_ENV_NODE="${node}"
    # The primary (or a promoted replica) runs postgres itself; a replica runs the shipped
    # replica-entrypoint.sh, which clones the primary when it has no data directory.
    if [[ "${node}" == "$(current_primary)" ]]; then
        spawn "${name}" db_env postgres -D "$(db_data_dir "${node}")" "${options[@]}"
    else
        spawn "${name}" db_env bash "${ROOT}/docker/cluster/replica/replica-entrypoint.sh" "${options[@]}"
    fi
}

psql_super() {
    local node="$1"
    shift
    as_server_user env -i PATH="${PG_BIN}:/usr/bin:/bin" "${PG_BIN}/psql" -X -q -At -v ON_ERROR_STOP=1 \
        -h "$(db_socket_dir "${node}")" -p "$(db_port "${node}")" -U postgres -d apm "$@"
}

replicas_streaming() {
    local count
    count="$(psql_super "$(current_primary)" -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null)" || return 1
    (( count >= $1 ))
}

exporter_env() {
    echo "DATA_SOURCE_URI=127.0.0.1:$(db_port "${EXPORTER_NODE}")/apm?sslmode=verify-full&sslrootcert=${CERTS}/public.crt"
    echo "DATA_SOURCE_USER=apm_monitor"
    echo "DATA_SOURCE_PASS_FILE=${STATE}/data/secrets/db_monitor_password"
}

start_exporter() {
    local node="$1" port_var
    port_var="PORT_EXPORTER_${node^^}"
    EXPORTER_NODE="${node}"
    spawn "postgres-exporter-${node}" exporter_env /usr/bin/prometheus-postgres-exporter \
        --extend.query-path="${ROOT}/docker/monitoring/postgres-exporter/queries.yml" \
        --web.config.file="${STATE}/data/exporter/web.yml" \
        --web.listen-address="127.0.0.1:${!port_var}"
}

no_env() {
    :
}

start_node_exporter() {
    local node="$1" port="$2"
    shift 2
    spawn "node-exporter-${node}" no_env /usr/bin/prometheus-node-exporter \
        --web.config.file="${STATE}/${node}/exporter/web.yml" \
        --web.listen-address="127.0.0.1:${port}" "$@"
}

pgbackrest_db_server_env() {
    pgbackrest_db_env "$(current_primary)"
}

data_up() {
    init_primary
    start_db primary
    wait_until "db-primary to accept connections on ${PORT_DB_PRIMARY}" "${WAIT_SECONDS}" pg_ready "${PORT_DB_PRIMARY}"
    start_db replica1
    start_db replica2
    wait_until "replica1 on ${PORT_DB_REPLICA1}" "${WAIT_SECONDS}" pg_ready "${PORT_DB_REPLICA1}"
    wait_until "replica2 on ${PORT_DB_REPLICA2}" "${WAIT_SECONDS}" pg_ready "${PORT_DB_REPLICA2}"
    wait_until "both replicas streaming from $(current_primary)" "${WAIT_SECONDS}" replicas_streaming 2
    spawn pgbackrest-db pgbackrest_db_server_env pgbackrest server
    local node
    for node in "${DB_NODES[@]}"; do
        start_exporter "${node}"
    done
    start_named node-exporter-data
}

# --- CONTROL node -----------------------------------------------------------------------

# SeaweedFS in one process (master, volume, filer, S3 gateway) in place of MinIO. Two
# identities, as docker/minio/init.sh sets MinIO up: the admin (MinIO's root user) and
# `pgbackrest`, limited to the two buckets.
write_s3_identities() {
    local file="${STATE}/control/s3-identities.json" admin admin_secret pgbackrest_secret
    admin="$(tr -d '\n' < "${STATE}/secrets/minio_root_user")"
    admin_secret="$(tr -d '\n' < "${STATE}/secrets/minio_root_password")"
    pgbackrest_secret="$(tr -d '\n' < "${STATE}/secrets/pgbackrest_s3_secret")"
    (umask 077 && cat > "${file}" <<JSON
{"identities": [
  {"name": "admin", "credentials": [{"accessKey": "${admin}", "secretKey": "${admin_secret}"}],
   "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
  {"name": "pgbackrest", "credentials": [{"accessKey": "pgbackrest", "secretKey": "${pgbackrest_secret}"}],
   "actions": ["Read:apm-backups-hot", "Write:apm-backups-hot", "List:apm-backups-hot",
               "Read:apm-backups-cold", "Write:apm-backups-cold", "List:apm-backups-cold"]}
]}
JSON
    )
    [[ "$(id -u)" == 0 ]] && chown "${RUN_AS}:" "${file}"
    return 0
}

start_s3() {
    spawn s3 no_env "${OPS_BIN}/weed" server -dir="${STATE}/control/s3" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 -volume.max=8 \
        -master.port="${PORT_S3_MASTER}" -master.port.grpc="${PORT_S3_MASTER_GRPC}" \
        -volume.port="${PORT_S3_VOLUME}" -volume.port.grpc="${PORT_S3_VOLUME_GRPC}" \
        -filer -filer.port="${PORT_S3_FILER}" -filer.port.grpc="${PORT_S3_FILER_GRPC}" \
        -s3 -s3.port="${PORT_S3_HTTP}" -s3.port.https="${PORT_S3_HTTPS}" -s3.port.grpc="${PORT_S3_GRPC}" \
        -s3.port.iceberg="${PORT_S3_ICEBERG}" -s3.port.lance="${PORT_S3_LANCE}" \
        -metricsPort="${PORT_S3_METRICS}" \
        -s3.cert.file="${CERTS}/minio/public.crt" -s3.key.file="${CERTS}/minio/private.key" \
        -s3.config="${STATE}/control/s3-identities.json"
}

# An S3 request signed as the admin (curl's SigV4), over verified TLS.
s3_admin() {
    local method="$1" path="$2" admin secret
    admin="$(tr -d '\n' < "${STATE}/secrets/minio_root_user")"
    secret="$(tr -d '\n' < "${STATE}/secrets/minio_root_password")"
    curl -sS --fail-with-body --max-time 10 --cacert "${CERTS}/minio/public.crt" \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "${admin}:${secret}" \
        -X "${method}" "https://localhost:${PORT_S3_HTTPS}${path}"
}

s3_ready() {
    s3_admin GET / >/dev/null 2>&1
}

create_buckets() {
    local bucket
    for bucket in apm-backups-hot apm-backups-cold; do
        if ! s3_admin HEAD "/${bucket}" >/dev/null 2>&1; then
            s3_admin PUT "/${bucket}" >/dev/null
            log "s3: bucket ${bucket} created"
        fi
    done
}

# The repository host: docker/backup/pgbackrest-server.conf, with the CONTROL node's
# mounts and the DATA node's address given as PGBACKREST_* variables.
pgbackrest_repo_env() {
    local primary
    primary="$(current_primary)"
    echo "PGBACKREST_CONFIG=${ROOT}/docker/backup/pgbackrest-server.conf"
    echo "PGBACKREST_CMD=${STATE}/bin/pgbackrest-secrets"
    echo "PGBACKREST_TLS_SERVER_ADDRESS=127.0.0.1"
    echo "PGBACKREST_TLS_SERVER_PORT=${PORT_PGBACKREST_REPO}"
    echo "PGBACKREST_TLS_SERVER_CA_FILE=${PGBR_CERTS}/ca.crt"
    echo "PGBACKREST_TLS_SERVER_CERT_FILE=${PGBR_CERTS}/server.crt"
    echo "PGBACKREST_TLS_SERVER_KEY_FILE=${PGBR_CERTS}/server.key"
    local repo
    for repo in 1 2; do
        echo "PGBACKREST_REPO${repo}_S3_ENDPOINT=localhost"
        echo "PGBACKREST_REPO${repo}_STORAGE_PORT=${PORT_S3_HTTPS}"
        echo "PGBACKREST_REPO${repo}_STORAGE_CA_FILE=${CERTS}/minio/public.crt"
    done
    echo "PGBACKREST_PG1_HOST=localhost"
    echo "PGBACKREST_PG1_HOST_PORT=${PORT_PGBACKREST_DB}"
    echo "PGBACKREST_PG1_HOST_CA_FILE=${PGBR_CERTS}/ca.crt"
    echo "PGBACKREST_PG1_HOST_CERT_FILE=${PGBR_CERTS}/server.crt"
    echo "PGBACKREST_PG1_HOST_KEY_FILE=${PGBR_CERTS}/server.key"
    echo "PGBACKREST_PG1_PATH=$(db_data_dir "${primary}")"
    echo "PGBACKREST_PG1_PORT=$(db_port "${primary}")"
    echo "PGBACKREST_PG1_SOCKET_PATH=$(db_socket_dir "${primary}")"
    echo "PGBACKREST_LOG_PATH=${STATE}/control/pgbackrest/log"
    echo "PGBACKREST_LOCK_PATH=${STATE}/control/pgbackrest/lock"
    echo "SECRETS_DIR=${STATE}/control/secrets"
    echo "BACKUP_METRICS_DIR=${STATE}/control/metrics"
    echo "BACKUP_TIME=${BACKUP_TIME:-01:00}"
    echo "BACKUP_FULL_WEEKDAY=${BACKUP_FULL_WEEKDAY:-7}"
}

# pgbackrest on the repository host with its environment (drills, status, `info`).
pgbackrest_repo() {
    local -a environment
    mapfile -t environment < <(base_env; pgbackrest_repo_env)
    as_server_user env -i "${environment[@]}" "${STATE}/bin/pgbackrest-secrets" "$@"
}

# The schedule's first full backup to REPO has finished: its metrics file exists (written
# after each attempt by pgbackrest-cron.sh); fails the start-up if that attempt failed.
first_backup_done() {
    local file="${STATE}/control/metrics/apm_backup_repo$1.prom"
    [[ -s "${file}" ]] || return 1
    grep -q '^apm_backup_last_status{.*} 1$' "${file}" \
        || die "the first full backup to repo$1 failed: see ${STATE}/log/pgbackrest.log"
}

# Prometheus' /etc/prometheus/ of the CONTROL container: the shipped config and rules
# (linked), the deployment certificate as CA, and targets rendered for these ports, all
# over TLS as across nodes.
write_prometheus_targets() {
    local dir="${STATE}/control/prometheus"
    ln -sfn "${ROOT}/docker/monitoring/prometheus.yml" "${dir}/prometheus.yml"
    ln -sfn "${ROOT}/docker/monitoring/alerts.yml" "${dir}/alerts.yml"
    ln -sfn "${CERTS}/public.crt" "${dir}/certs/ca.crt"
    cat > "${dir}/targets/postgres.yml" <<YAML
# Rendered by scripts/cluster/local.sh (local cluster ports).
- targets: ["localhost:${PORT_EXPORTER_PRIMARY}"]
  labels: {__scheme__: https, node: data, role: primary, instance_name: primary}
- targets: ["localhost:${PORT_EXPORTER_REPLICA1}"]
  labels: {__scheme__: https, node: data, role: replica, instance_name: replica1}
- targets: ["localhost:${PORT_EXPORTER_REPLICA2}"]
  labels: {__scheme__: https, node: data, role: replica, instance_name: replica2}
YAML
    cat > "${dir}/targets/node.yml" <<YAML
# Rendered by scripts/cluster/local.sh (local cluster ports).
- targets: ["localhost:${PORT_NODE_APP}"]
  labels: {__scheme__: https, node: app}
- targets: ["localhost:${PORT_NODE_DATA}"]
  labels: {__scheme__: https, node: data}
- targets: ["localhost:${PORT_NODE_CONTROL}"]
  labels: {__scheme__: https, node: control}
YAML
    cat > "${dir}/targets/apm-web.yml" <<YAML
# Rendered by scripts/cluster/local.sh (local cluster ports): Nginx' metrics server.
- targets: ["localhost:${PORT_APP_METRICS}"]
  labels: {__scheme__: https, node: app}
YAML
    cat > "${dir}/targets/prometheus.yml" <<YAML
# Rendered by scripts/cluster/local.sh: Prometheus itself, on its local port.
- targets: ["localhost:${PORT_PROMETHEUS}"]
YAML
}

start_prometheus() {
    write_prometheus_targets
    local dir="${STATE}/control/prometheus"
    spawn prometheus no_env /usr/bin/prometheus --config.file="${dir}/prometheus.yml" \
        --storage.tsdb.path="${dir}/data" --web.listen-address="127.0.0.1:${PORT_PROMETHEUS}" \
        --web.external-url="http://localhost:${PORT_PROMETHEUS}/"
}

prometheus_ready() {
    curl -sf --max-time 5 "http://127.0.0.1:${PORT_PROMETHEUS}/-/ready"
}

control_up() {
    write_s3_identities
    start_s3
    wait_until "the S3 server on ${PORT_S3_HTTPS}" "${WAIT_SECONDS}" s3_ready
    create_buckets
    # `pgbackrest server` and the schedule (stanza-create, first full backups), as the
    # pgbackrest container's entrypoint runs them.
    spawn pgbackrest pgbackrest_repo_env pgbackrest-entrypoint server
    start_named node-exporter-control
    start_prometheus
    wait_until "Prometheus on ${PORT_PROMETHEUS}" "${WAIT_SECONDS}" prometheus_ready
    # The drills restore from these: wait for the schedule's first full backups.
    wait_until "the first full backup to repo1 (log/pgbackrest.log)" 600 first_backup_done 1
    wait_until "the first full backup to repo2 (log/pgbackrest.log)" 600 first_backup_done 2
}

# --- APP node -------------------------------------------------------------------------
# The web image's entrypoint (docker/entrypoint.sh) runs migrate and gunicorn, and
# manage.py run_jobs runs the scheduler, with the app's environment of the Compose APP
# stack: .env.docker, its /run/secrets/ files taken from the APP node's secrets, and the
# database URLs rendered for the local instances.

# The writers' URL names every instance with target_session_attrs=read-write: libpq
# connects to whichever accepts writes, so after a failover the app finds the new
# primary without any change (drill 02). Readers: each replica.
render_app_secrets() {
    local dir="${STATE}/app/secrets" writer reader tls
    writer="$(tr -d '\n' < "${STATE}/secrets/db_writer_password")"
    reader="$(tr -d '\n' < "${STATE}/secrets/db_reader_password")"
    tls="sslmode=verify-full&sslrootcert=${CERTS}/public.crt"
    (
        umask 027
        printf 'postgres://apm_writer:%s@127.0.0.1%%2C127.0.0.1%%2C127.0.0.1/apm?port=%s%%2C%s%%2C%s&target_session_attrs=read-write&%s\n' \
            "${writer}" "${PORT_DB_PRIMARY}" "${PORT_DB_REPLICA1}" "${PORT_DB_REPLICA2}" "${tls}" > "${dir}/database_url"
        printf 'postgres://apm_reader:%s@127.0.0.1:%s/apm?%s,postgres://apm_reader:%s@127.0.0.1:%s/apm?%s\n' \
            "${reader}" "${PORT_DB_REPLICA1}" "${tls}" "${reader}" "${PORT_DB_REPLICA2}" "${tls}" \
            > "${dir}/database_replica_urls"
        : > "${dir}/gemini_api_key"
    )
    if [[ "$(id -u)" == 0 ]]; then
        chgrp "${RUN_AS}" "${dir}"/database_url "${dir}"/database_replica_urls "${dir}"/gemini_api_key
    fi
}

app_env() {
    # .env.docker as the containers get it, the secrets' mount point moved.
    sed -e '/^#/d' -e '/^$/d' \
        -e "s|/run/secrets/|${STATE}/app/secrets/|" \
        -e "s|^PROMETHEUS_MULTIPROC_DIR=.*|PROMETHEUS_MULTIPROC_DIR=${STATE}/app/prometheus|" \
        "${ROOT}/.env.docker"
    # docker-compose.app.yml's environment.
    echo "DATABASE_REPLICA_URLS_FILE=${STATE}/app/secrets/database_replica_urls"
    echo "ALLOWED_HOSTS=localhost,127.0.0.1,apm-app,web"
    echo "CSRF_TRUSTED_ORIGINS=https://localhost:${PORT_APP_HTTPS}"
    echo "PATH=${ROOT}/.venv/bin:/usr/bin:/bin"
}

# Nginx with the shipped nginx.conf and conf.d/default.conf, rendered for this machine as
# scripts/validate/nginx.sh renders them for `nginx -t`: paths under /etc/nginx/ moved to
# the APP node's directory, the `web` service replaced by gunicorn's loopback address, the
# listening ports moved to the local ones on 127.0.0.1, and temporary files kept there.
# The metrics port's allow line, which switch_cluster_mode.py renders from
# `monitoring.network` on the nodes, names the local monitoring network: Prometheus
# scrapes from the loopback (CLUSTER_LOCAL_MONITORING_NETWORK, 127.0.0.1/32).
render_nginx() {
    local prefix="${STATE}/app/nginx"
    mkdir -p "${prefix}/conf.d" "${prefix}/certs" "${prefix}/temp" "${prefix}/metrics-allow.d"
    printf '# Rendered by scripts/cluster/local.sh: the local monitoring network.\nallow %s;\n' \
        "${CLUSTER_LOCAL_MONITORING_NETWORK:-127.0.0.1/32}" > "${prefix}/metrics-allow.d/metrics-allow.conf"
    ln -sfn /etc/nginx/mime.types "${prefix}/mime.types"
    ln -sfn "${CERTS}/public.crt" "${prefix}/certs/public.crt"
    ln -sfn "${CERTS}/private.key" "${prefix}/certs/private.key"
    sed -e "s|/etc/nginx/|${prefix}/|g" -e "s|^pid .*|pid ${prefix}/nginx.pid;|" \
        -e "s|^http {|http {\n    client_body_temp_path ${prefix}/temp/body;\n    proxy_temp_path ${prefix}/temp/proxy;\n    fastcgi_temp_path ${prefix}/temp/fastcgi;\n    uwsgi_temp_path ${prefix}/temp/uwsgi;\n    scgi_temp_path ${prefix}/temp/scgi;|" \
        "${ROOT}/docker/nginx/nginx.conf" > "${prefix}/nginx.conf"
    sed -e "s|/etc/nginx/|${prefix}/|g" -e "s|http://web:8000|http://127.0.0.1:${PORT_WEB}|g" \
        -e "s|listen 8080;|listen 127.0.0.1:${PORT_APP_HTTP};|" \
        -e "s|listen 8443 ssl http2;|listen 127.0.0.1:${PORT_APP_HTTPS} ssl http2;|" \
        -e "s|listen 9443 ssl;|listen 127.0.0.1:${PORT_APP_METRICS} ssl;|" \
        "${ROOT}/docker/nginx/conf.d/default.conf" > "${prefix}/conf.d/default.conf"
    [[ "$(id -u)" != 0 ]] || chown -R "${RUN_AS}:" "${prefix}"
}

start_nginx() {
    render_nginx
    local prefix="${STATE}/app/nginx"
    spawn nginx no_env /usr/sbin/nginx -e stderr -p "${prefix}" -c "${prefix}/nginx.conf" -g "daemon off;"
}

# docker/entrypoint.sh as the web image runs it: wait for the database, then the command.
# The app's processes run as the invoking user, not RUN_AS: .venv's interpreter may live
# where other users cannot read (pyenv under /root on these machines).
start_app_process() {
    local name="$1"
    shift
    SPAWN_CWD="${ROOT}" SPAWN_AS_SELF=1 spawn "${name}" app_env bash "${ROOT}/docker/entrypoint.sh" "$@"
}

run_migrate() {
    local -a environment
    mapfile -t environment < <(base_env; app_env)
    (cd "${ROOT}" && env -i "${environment[@]}" bash docker/entrypoint.sh migrate) >> "${STATE}/log/migrate.log" 2>&1
}

app_manage() {
    local -a environment
    mapfile -t environment < <(base_env; app_env)
    (cd "${ROOT}" && env -i "${environment[@]}" python manage.py "$@")
}

web_ready() {
    curl -sf --max-time 5 --cacert "${CERTS}/public.crt" "https://localhost:${PORT_APP_HTTPS}/readyz"
}

app_up() {
    start_named node-exporter-app
    mkdir -p "${STATE}/app/prometheus"
    render_app_secrets
    log "app: migrate (log/migrate.log)"
    if ! run_migrate; then
        log "app: migrate failed, so the APP node (web, jobs, nginx) is not started: $(grep -E '^[A-Za-z_.]+(Error|Exception)' "${STATE}/log/migrate.log" | tail -1 || true)"
        return 0
    fi
    # As the image's build does: WhiteNoise serves the collected files (staticfiles/).
    app_manage collectstatic --noinput --verbosity 0
    local name
    for name in web jobs nginx; do
        start_named "${name}"
    done
    wait_until "the app's /readyz through Nginx TLS on ${PORT_APP_HTTPS}" "${WAIT_SECONDS}" web_ready
    if [[ ! -s "${STATE}/app/drill-api-key" ]]; then
        (umask 077 && app_manage create_api_key --project drills --scopes ingest,read --name drills \
            > "${STATE}/app/drill-api-key")
    fi
}

# --- Commands ---------------------------------------------------------------------------

PROCESSES=(db-primary db-replica1 db-replica2 pgbackrest-db postgres-exporter-primary
    postgres-exporter-replica1 postgres-exporter-replica2 node-exporter-data
    s3 pgbackrest node-exporter-control prometheus
    web jobs nginx node-exporter-app)

process_port() {
    case "$1" in
        db-primary) echo "${PORT_DB_PRIMARY}" ;;
        db-replica1) echo "${PORT_DB_REPLICA1}" ;;
        db-replica2) echo "${PORT_DB_REPLICA2}" ;;
        pgbackrest-db) echo "${PORT_PGBACKREST_DB} (mTLS)" ;;
        postgres-exporter-primary) echo "${PORT_EXPORTER_PRIMARY} (TLS)" ;;
        postgres-exporter-replica1) echo "${PORT_EXPORTER_REPLICA1} (TLS)" ;;
        postgres-exporter-replica2) echo "${PORT_EXPORTER_REPLICA2} (TLS)" ;;
        node-exporter-data) echo "${PORT_NODE_DATA} (TLS)" ;;
        s3) echo "${PORT_S3_HTTPS} (TLS; internal ${PORT_S3_HTTP}-${PORT_S3_METRICS})" ;;
        pgbackrest) echo "${PORT_PGBACKREST_REPO} (mTLS)" ;;
        node-exporter-control) echo "${PORT_NODE_CONTROL} (TLS)" ;;
        prometheus) echo "${PORT_PROMETHEUS}" ;;
        web) echo "${PORT_WEB}" ;;
        nginx) echo "${PORT_APP_HTTPS} (TLS), ${PORT_APP_HTTP}, ${PORT_APP_METRICS} (metrics, TLS)" ;;
        node-exporter-app) echo "${PORT_NODE_APP} (TLS)" ;;
        *) echo "-" ;;
    esac
}

process_node() {
    case "$1" in
        db-*|pgbackrest-db|postgres-exporter-*|node-exporter-data) echo DATA ;;
        s3|pgbackrest|node-exporter-control|prometheus) echo CONTROL ;;
        *) echo APP ;;
    esac
}

status() {
    local name state
    echo "Local cluster: state ${STATE}, base port ${BASE_PORT}, servers run as ${RUN_AS}"
    printf '%-8s %-27s %-8s %-8s %-44s %s\n' NODE PROCESS STATE PID PORT LOG
    for name in "${PROCESSES[@]}"; do
        if is_running "${name}"; then state=running; else state=stopped; fi
        printf '%-8s %-27s %-8s %-8s %-44s %s\n' "$(process_node "${name}")" "${name}" "${state}" \
            "$(pid_of "${name}" || echo -)" "$(process_port "${name}")" "${STATE#"${ROOT}/"}/log/${name}.log"
    done
    echo "Data: $(for node in "${DB_NODES[@]}"; do printf '%s=%s ' "${node}" "$(db_data_dir "${node}")"; done)"
    echo "      S3 ${STATE}/control/s3, Prometheus ${STATE}/control/prometheus/data, backup metrics ${STATE}/control/metrics"
    echo "Primary now: $(current_primary); Prometheus http://127.0.0.1:${PORT_PROMETHEUS}/"
    if is_running "db-$(current_primary)"; then
        psql_super "$(current_primary)" -c \
            "SELECT 'replication: ' || coalesce(string_agg(application_name || ' ' || state || ' (ssl ' || ssl || ')', ', '), 'none') FROM pg_stat_replication JOIN pg_stat_ssl USING (pid)" || true
    fi
}

up() {
    local started
    started="$(date +%s)"
    require_tools
    prepare
    data_up
    control_up
    app_up
    log "up in $(( $(date +%s) - started ))s"
    status
}

# The APP node, then the databases while the repository host still takes their last WAL
# (a primary's shutdown waits for its archiver), then the rest.
STOP_ORDER=(nginx jobs web node-exporter-app db-replica2 db-replica1 db-primary pgbackrest-db
    postgres-exporter-primary postgres-exporter-replica1 postgres-exporter-replica2
    node-exporter-data prometheus node-exporter-control pgbackrest s3)

down() {
    local name
    for name in "${STOP_ORDER[@]}"; do
        stop_named "${name}"
    done
}

# Fast shutdown (SIGINT to the postmaster, which stops its children). It can take a while
# when archiving fails (the archiver finishes its attempt, up to pgBackRest's
# archive-timeout); then SIGKILL to the postmaster and its children, which run in
# sessions of their own.
stop_postgres() {
    local name="$1" pid waited=0
    pid="$(pid_of "${name}")" || { rm -f "${STATE}/run/${name}.pid"; return 0; }
    log "${name}: fast shutdown"
    kill -s INT "${pid}" 2>/dev/null || true
    while kill -0 "${pid}" 2>/dev/null; do
        if (( waited++ >= 150 )); then
            log "${name}: still running after 150s; SIGKILL"
            kill_postgres "${pid}"
            break
        fi
        sleep 1
    done
    rm -f "${STATE}/run/${name}.pid"
}

kill_postgres() {
    local pid="$1" children
    children="$(pgrep -P "${pid}" | tr '\n' ' ')"
    # shellcheck disable=SC2086  # a list of pids
    kill -s KILL "${pid}" ${children} 2>/dev/null || true
}

# --- Operations on one process (the drills' local driver) --------------------------------

start_named() {
    case "$1" in
        db-*) start_db "${1#db-}" ;;
        pgbackrest-db) spawn pgbackrest-db pgbackrest_db_server_env pgbackrest server ;;
        postgres-exporter-*) start_exporter "${1#postgres-exporter-}" ;;
        s3) start_s3 ;;
        pgbackrest) spawn pgbackrest pgbackrest_repo_env pgbackrest-entrypoint server ;;
        prometheus) start_prometheus ;;
        node-exporter-data) start_node_exporter data "${PORT_NODE_DATA}" ;;
        node-exporter-control) start_node_exporter control "${PORT_NODE_CONTROL}" \
            --collector.textfile.directory="${STATE}/control/metrics" ;;
        node-exporter-app) start_node_exporter app "${PORT_NODE_APP}" ;;
        web) start_app_process web python -m gunicorn -c python:apm_platform.gunicorn_conf \
                 --bind "127.0.0.1:${PORT_WEB}" --workers "${WEB_CONCURRENCY:-2}" ;;
        jobs) start_app_process jobs python manage.py run_jobs ;;
        nginx) start_nginx ;;
        *) die "cannot start $1 alone" ;;
    esac
}

stop_named() {
    case "$1" in
        db-*) stop_postgres "$1" ;;
        # SeaweedFS' server mode stops its volume server on SIGTERM but not always the rest.
        s3) stop_process s3 TERM 10 ;;
        *) stop_process "$1" ;;
    esac
}

# As a crash: SIGKILL to every process of it at once, no shutdown.
kill_named() {
    local pid
    pid="$(pid_of "$1")" || die "$1 is not running"
    log "$1: SIGKILL"
    case "$1" in
        db-*) kill_postgres "${pid}" ;;
        *) kill -s KILL -- "-${pid}" 2>/dev/null || kill -s KILL "${pid}" ;;
    esac
    while kill -0 "${pid}" 2>/dev/null; do sleep 0.1; done
    rm -f "${STATE}/run/$1.pid"
}

# pgbackrest on the DATA node for instance NODE (restore), as its container runs it.
pgbackrest_data() {
    local node="$1"
    shift
    local -a environment
    mapfile -t environment < <(base_env; pgbackrest_db_env "${node}")
    as_server_user env -i "${environment[@]}" "${STATE}/bin/pgbackrest-secrets" "$@"
}

# The shipped primary-setup.sh on a primary that lost its slots (restored from a backup, or
# a promoted replica): the replicas' slots again, and the same pg_hba.conf.
primary_setup() {
    local node="$1"
    as_server_user env -i PATH="${PG_BIN}:/usr/bin:/bin" HOME="${STATE}/home" \
        PGHOST="$(db_socket_dir "${node}")" PGPORT="$(db_port "${node}")" PGDATA="$(db_data_dir "${node}")" \
        POSTGRES_USER=postgres POSTGRES_DB=apm REPLICA_SLOTS="$(replica_slots_of "${node}")" \
        bash "${ROOT}/docker/cluster/replica/primary-setup.sh" >&2
    psql_super "${node}" -c "SELECT pg_reload_conf()" >/dev/null
}

# Every instance but NODE has a slot on NODE (each replica streams through its own name).
replica_slots_of() {
    local node="$1" other slots=()
    for other in "${DB_NODES[@]}"; do
        [[ "${other}" == "${node}" ]] || slots+=("${other}")
    done
    (IFS=,; echo "${slots[*]}")
}

set_primary() {
    db_port "$1" >/dev/null
    echo "$1" > "${STATE}/run/primary"
    [[ "$(id -u)" == 0 ]] && chown "${RUN_AS}:" "${STATE}/run/primary"
    log "the primary is now $1"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    clean) down; rm -rf "${STATE}"; log "removed ${STATE}" ;;
    start) shift; for name in "$@"; do start_named "${name}"; done ;;
    stop) shift; for name in "$@"; do stop_named "${name}"; done ;;
    kill) shift; for name in "$@"; do kill_named "${name}"; done ;;
    running) is_running "$2" ;;
    psql) shift; psql_super "$@" ;;
    pgbackrest-repo) shift; pgbackrest_repo "$@" ;;
    pgbackrest-data) shift; pgbackrest_data "$@" ;;
    primary-setup) primary_setup "$2" ;;
    set-primary) set_primary "$2" ;;
    postgres-options) postgres_options "$2" ;;
    render-nginx) render_nginx; echo "${STATE}/app/nginx" ;;
    # The step runner (scripts/steps/): the app's manage.py as the APP node runs it, and
    # the environment pgBackRest and PostgreSQL get on the DATA node for instance NODE.
    manage) shift; app_manage "$@" ;;
    pgbackrest-env) base_env; pgbackrest_db_env "$2" ;;
    *) echo "usage: $0 up|down|status|clean | start|stop|kill NAME... | running NAME | psql NODE ARGS |" \
            "pgbackrest-repo ARGS | pgbackrest-data NODE ARGS | primary-setup NODE | set-primary NODE |" \
            "manage ARGS | pgbackrest-env NODE" >&2
       exit 2 ;;
esac
