#!/usr/bin/env bash
# Primary side of streaming replication (DATA node). Mounted into
# /docker-entrypoint-initdb.d, so the image's entrypoint runs it once, as postgres, when
# it initialises the data directory (after 001_roles.sh, which creates `replicator`).
#   - one physical replication slot per replica (REPLICA_SLOTS, comma-separated): the
#     primary keeps the WAL a replica has not received yet, up to max_slot_wal_keep_size.
#     Each slot reserves WAL from its creation: an unreserved slot gets its position only
#     when its replica's clone starts streaming, and a checkpoint running at that moment
#     (the other replica's clone asks for one) can invalidate it as if it exceeded
#     max_slot_wal_keep_size, failing that clone (seen with two replicas starting at once);
#   - pg_hba.conf: from the network only TLS with SCRAM passwords, for the app's roles
#     and for `replicator`'s replication connections; the superuser `postgres` never
#     (inside the container only, on the socket). pg_basebackup copies this file to the
#     replicas, so a promoted replica accepts the same clients.
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${POSTGRES_DB:?POSTGRES_DB must be set}"

create_slot() {
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
        -v slot="$1" <<'SQL'
SELECT pg_create_physical_replication_slot(:'slot', immediately_reserve => true)
WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = :'slot');
SQL
}

IFS=',' read -r -a slots <<< "${REPLICA_SLOTS:-replica1,replica2}"
for slot in "${slots[@]}"; do
    create_slot "${slot}"
done

cat > "${PGDATA}/pg_hba.conf" <<'HBA'
# Written by docker/cluster/replica/primary-setup.sh at initialisation.
# TYPE   DATABASE      USER        ADDRESS         METHOD
# Inside the container (health checks, pgBackRest over the shared socket).
local    all           postgres                    peer
local    all           all                         scram-sha-256
# From the network: never the superuser (the first matching line decides), and the
# others with TLS and SCRAM only.
host     all           postgres    all             reject
hostssl  all           all         all             scram-sha-256
hostssl  replication   replicator  all             scram-sha-256
HBA
echo "primary-setup: slots ${REPLICA_SLOTS:-replica1,replica2}; pg_hba.conf requires TLS from the network, refuses postgres there"
