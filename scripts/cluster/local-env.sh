#!/usr/bin/env bash
# The local cluster's layout (sourced by scripts/cluster/local.sh and the drills' local
# driver): where each node's state lives and which loopback port each process has.
#
# Every process listens on 127.0.0.1 at CLUSTER_LOCAL_BASE_PORT + a fixed offset. The base
# port defaults to one derived from the checkout's path, 20000-31950 in steps of 50, so
# two checkouts on one machine (a developer's and CI's clean clone) do not collide, and
# it stays below Linux' ephemeral range (32768+). Set CLUSTER_LOCAL_BASE_PORT to choose.
# All state is under CLUSTER_LOCAL_DIR (default .cluster-local/ in the checkout).
# shellcheck disable=SC2034  # the names are used by the scripts that source this file
set -euo pipefail

CLUSTER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${CLUSTER_LOCAL_DIR:-${CLUSTER_ROOT}/.cluster-local}"
BASE_PORT="${CLUSTER_LOCAL_BASE_PORT:-$(( 20000 + $(cksum <<< "${CLUSTER_ROOT}" | cut -d' ' -f1) % 240 * 50 ))}"
PG_BIN="${CLUSTER_LOCAL_PG_BIN:-/usr/lib/postgresql/15/bin}"
# PostgreSQL refuses to run as root. The container's user is `postgres`, whose peer
# authentication on the socket pgBackRest relies on; Debian's postgresql package creates
# that user here. Run as someone else, everything runs as you (peer auth then needs you
# to be `postgres`).
if [[ "$(id -u)" == 0 ]]; then
    RUN_AS=postgres
else
    RUN_AS="$(id -un)"
fi

# --- Ports (offsets from BASE_PORT) ---------------------------------------------------
# DATA
PORT_DB_PRIMARY=$(( BASE_PORT + 0 ))
PORT_DB_REPLICA1=$(( BASE_PORT + 1 ))
PORT_DB_REPLICA2=$(( BASE_PORT + 2 ))
PORT_PGBACKREST_DB=$(( BASE_PORT + 3 ))
PORT_EXPORTER_PRIMARY=$(( BASE_PORT + 10 ))
PORT_EXPORTER_REPLICA1=$(( BASE_PORT + 11 ))
PORT_EXPORTER_REPLICA2=$(( BASE_PORT + 12 ))
PORT_NODE_DATA=$(( BASE_PORT + 13 ))
# CONTROL
PORT_PGBACKREST_REPO=$(( BASE_PORT + 4 ))
PORT_S3_HTTPS=$(( BASE_PORT + 5 ))
# SeaweedFS' internal ports (its S3 gateway over plain HTTP, master, volume, filer,
# their gRPC ports, metrics): all explicit, so none defaults to port + 10000.
PORT_S3_HTTP=$(( BASE_PORT + 6 ))
PORT_S3_MASTER=$(( BASE_PORT + 7 ))
PORT_S3_MASTER_GRPC=$(( BASE_PORT + 8 ))
PORT_S3_VOLUME=$(( BASE_PORT + 9 ))
PORT_S3_VOLUME_GRPC=$(( BASE_PORT + 14 ))
PORT_S3_FILER=$(( BASE_PORT + 15 ))
PORT_S3_FILER_GRPC=$(( BASE_PORT + 16 ))
PORT_S3_GRPC=$(( BASE_PORT + 17 ))
PORT_S3_ICEBERG=$(( BASE_PORT + 18 ))
PORT_S3_LANCE=$(( BASE_PORT + 19 ))
PORT_S3_METRICS=$(( BASE_PORT + 20 ))
PORT_NODE_CONTROL=$(( BASE_PORT + 21 ))
PORT_PROMETHEUS=$(( BASE_PORT + 22 ))
# APP
PORT_WEB=$(( BASE_PORT + 30 ))
PORT_APP_HTTP=$(( BASE_PORT + 31 ))
PORT_APP_HTTPS=$(( BASE_PORT + 32 ))
PORT_APP_METRICS=$(( BASE_PORT + 33 ))
PORT_NODE_APP=$(( BASE_PORT + 34 ))

# The PostgreSQL instances of the DATA node, in the order the drills name them.
DB_NODES=(primary replica1 replica2)

db_port() {
    case "$1" in
        primary) echo "${PORT_DB_PRIMARY}" ;;
        replica1) echo "${PORT_DB_REPLICA1}" ;;
        replica2) echo "${PORT_DB_REPLICA2}" ;;
        *) echo "unknown database node: $1" >&2; return 1 ;;
    esac
}

# Per instance, as each container mounts it: /home/postgres/pgdata/data and its socket.
db_data_dir() {
    echo "${STATE}/data/$1/pgdata/data"
}

db_socket_dir() {
    echo "${STATE}/data/$1/socket"
}

# The instance that is the primary now (drill 02 promotes replica1).
current_primary() {
    if [[ -s "${STATE}/run/primary" ]]; then
        cat "${STATE}/run/primary"
    else
        echo primary
    fi
}
