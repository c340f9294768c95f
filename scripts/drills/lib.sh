#!/usr/bin/env bash
# Shared by the failure drills (sourced). The drills need a Docker engine with the
# Compose plugin and a running stack: the single host with backups
# (make up backup-up) for 00, 01 and 03; the DATA stack of the cluster for 02.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPORTS="${ROOT}/reports/drills"
SINGLE=(docker compose -f "${ROOT}/docker/docker-compose.yml" -f "${ROOT}/docker/docker-compose.backup.yml"
        --env-file "${ROOT}/docker/.env.ports")
# shellcheck disable=SC2034  # used by 02_failover_replica.sh, which sources this file
DATA=(docker compose -f "${ROOT}/docker/cluster/docker-compose.data.yml"
      --env-file "${ROOT}/docker/cluster/.env.cluster")

require_docker() {
    if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
        echo "$(basename "$0"): needs a Docker engine with the Compose plugin; none is reachable here." >&2
        exit 2
    fi
}

log() {
    echo "[$(date -u +%H:%M:%S)] $*" >&2
}

# psql on the single host's database, as the superuser over the container's socket.
sql_single() {
    "${SINGLE[@]}" exec -T db psql -U postgres -d apm -At -v ON_ERROR_STOP=1 -c "$1"
}

wait_healthy() {
    local service="$1" timeout="${2:-300}" started
    started="$(date +%s)"
    until [[ "$("${SINGLE[@]}" ps --format '{{.Health}}' "${service}" 2>/dev/null)" == healthy ]]; do
        if (( $(date +%s) - started > timeout )); then
            log "${service} is not healthy after ${timeout}s"
            return 1
        fi
        sleep 2
    done
}

# Writes reports/drills/<UTC time>-<drill>.json from "key=value" arguments (numbers
# stay numbers).
report() {
    local drill="$1" file pair key value body=""
    shift
    mkdir -p "${REPORTS}"
    file="${REPORTS}/$(date -u +%Y%m%dT%H%M%SZ)-${drill}.json"
    for pair in "$@"; do
        key="${pair%%=*}"
        value="${pair#*=}"
        [[ "${value}" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || value="\"${value//\"/\\\"}\""
        body="${body:+${body}, }\"${key}\": ${value}"
    done
    printf '{"drill": "%s", "finished_at": "%s", %s}\n' "${drill}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${body}" \
        > "${file}"
    log "report: ${file#"${ROOT}/"}"
    cat "${file}"
}
