#!/usr/bin/env bash
# Entrypoint of a streaming replica (DATA node).
# First start (no data directory): clone the primary with pg_basebackup, over TLS that
# verifies the primary's certificate, streaming the WAL through this replica's own
# replication slot (created by primary-setup.sh). The clone is made beside PGDATA and
# renamed when complete, so an interrupted clone is redone rather than started.
# Every start: run postgres as a hot standby of the primary. The connection settings are
# passed on the command line, not stored, so changing PRIMARY_HOST (after a failover)
# takes effect at the next restart. Arguments are extra postgres options.
set -euo pipefail

: "${PRIMARY_HOST:?PRIMARY_HOST must be set}"
: "${REPLICA_SLOT:?REPLICA_SLOT must be set}"
PGDATA="${PGDATA:-/home/postgres/pgdata/data}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
DB_TLS_CA_FILE="${DB_TLS_CA_FILE:-/etc/apm/tls/public.crt}"
secrets_dir="${SECRETS_DIR:-/run/secrets}"
passfile="$(dirname "${PGDATA}")/replication.pgpass"
conninfo="host=${PRIMARY_HOST} port=${PRIMARY_PORT} user=replicator passfile=${passfile}"
conninfo="${conninfo} sslmode=verify-ca sslrootcert=${DB_TLS_CA_FILE} application_name=${REPLICA_SLOT}"

log() {
    echo "replica-entrypoint (${REPLICA_SLOT}): $*" >&2
}

# Rewritten at every start, so a rotated replication password is picked up.
write_passfile() {
    local password
    password="$(tr -d '\n' < "${secrets_dir}/db_replication_password")"
    (umask 077 && printf '*:*:replication:replicator:%s\n' "${password}" > "${passfile}")
}

wait_for_primary() {
    until pg_isready --quiet --host="${PRIMARY_HOST}" --port="${PRIMARY_PORT}"; do
        log "waiting for the primary ${PRIMARY_HOST}:${PRIMARY_PORT}"
        sleep 2
    done
}

clone_primary() {
    local partial="${PGDATA}.partial"
    rm -rf "${partial}"
    log "cloning ${PRIMARY_HOST}:${PRIMARY_PORT} with slot ${REPLICA_SLOT}"
    pg_basebackup --pgdata="${partial}" --dbname="${conninfo}" --slot="${REPLICA_SLOT}" \
        --wal-method=stream --checkpoint=fast --no-password
    touch "${partial}/standby.signal"
    rm -rf "${PGDATA}"
    mv "${partial}" "${PGDATA}"
    log "clone complete"
}

write_passfile
if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
    wait_for_primary
    clone_primary
fi
exec postgres -D "${PGDATA}" \
    -c "primary_conninfo=${conninfo}" \
    -c "primary_slot_name=${REPLICA_SLOT}" \
    -c hot_standby=on \
    "$@"
