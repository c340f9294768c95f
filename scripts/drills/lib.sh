#!/usr/bin/env bash
# Shared by the failure drills (sourced). TARGET chooses where they run:
#   TARGET=local    the local cluster (make cluster-local): scripts/drills/driver-local.sh
#   TARGET=compose  the cluster's Compose stacks (make cluster-up, Docker engine needed):
#                   scripts/drills/driver-compose.sh
# The drills' steps are the same on both; a driver only says how to run SQL on, kill,
# start, restore or promote a database instance, reach pgBackRest's repository host, stop
# the S3 server, query Prometheus and reach the app. Every wait is bounded and fails with
# what it waited for. Each drill writes reports/drills/<drill>.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REPORTS="${DRILL_REPORTS:-${ROOT}/reports/drills}"
TARGET="${TARGET:-compose}"
DRILLS_PY="${DRILLS_PY:-${ROOT}/.venv/bin/python}"
MARKERS="${ROOT}/scripts/drills/markers.py"

log() {
    echo "[drill $(date -u +%H:%M:%S)] $*" >&2
}

case "${TARGET}" in
    local|compose) ;;
    *) echo "TARGET must be local or compose, not '${TARGET}'" >&2; exit 2 ;;
esac
# shellcheck source=driver-local.sh
source "${ROOT}/scripts/drills/driver-${TARGET}.sh"

now() {
    date +%s.%N | cut -c1-14
}

# seconds between two epoch times, to 0.1 s
elapsed() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'
}

# wait_for DESCRIPTION SECONDS COMMAND...: until COMMAND succeeds, at most SECONDS.
wait_for() {
    local what="$1" timeout="$2" started
    shift 2
    started="$(date +%s)"
    until "$@" >/dev/null 2>&1; do
        if (( $(date +%s) - started >= timeout )); then
            log "FAILED: ${what}: not within ${timeout}s"
            return 1
        fi
        sleep 1
    done
}

# Stops the drill with a failed report naming the check that failed.
fail() {
    local drill="$1" reason="$2"
    shift 2
    log "FAILED: ${reason}"
    report "${drill}" result=failed "reason=${reason}" "$@"
    exit 1
}

# report DRILL key=value...: reports/drills/DRILL.json. Numbers, true/false/null and JSON
# objects/arrays stay as they are; anything else is a string.
report() {
    local drill="$1" file pair key value body=""
    shift
    mkdir -p "${REPORTS}"
    file="${REPORTS}/${drill}.json"
    for pair in "$@"; do
        key="${pair%%=*}"
        value="${pair#*=}"
        if ! [[ "${value}" =~ ^-?[0-9]+(\.[0-9]+)?$ || "${value}" =~ ^(true|false|null)$ || "${value}" =~ ^[\{\[] ]]; then
            value="${value//\\/\\\\}"
            value="\"${value//\"/\\\"}\""
        fi
        body="${body}, \"${key}\": ${value}"
    done
    printf '{"drill": "%s", "target": "%s", "finished_at": "%s"%s}\n' \
        "${drill}" "${TARGET}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${body}" \
        | "${DRILLS_PY}" -m json.tool > "${file}"
    log "report: ${file#"${ROOT}/"}"
    cat "${file}"
}

# A JSON field of a one-line JSON document: json_field '{"a": 1}' a
json_field() {
    "${DRILLS_PY}" -c 'import json, sys; v = json.loads(sys.argv[1]).get(sys.argv[2]); print("null" if v is None else v)' "$1" "$2"
}

# --- Marker events: a steady ingest load with its acknowledgements recorded -----------

DRILL_WORK="${DRILL_WORK:-$(mktemp -d)}"
INGEST_PID=""

# The app's API when the APP node runs; otherwise the database directly (see markers.py),
# which the report says (writer).
ingest_start() {
    local service="$1"
    MARKER_SERVICE="${service}"
    MARKER_FILE="${DRILL_WORK}/${service}.jsonl"
    rm -f "${DRILL_WORK}/stop" "${MARKER_FILE}"
    local -a destination
    if driver_app_running; then
        destination=(--api "$(driver_app_url)" --api-key-file "$(driver_app_api_key_file)" --ca "$(driver_app_ca)")
        MARKER_TABLE=api_request
    else
        log "the APP node is not running: markers go straight to the primary (table drill_marker)"
        destination=(--dsn "$(driver_writer_dsn)")
        MARKER_TABLE=drill_marker
    fi
    "${DRILLS_PY}" "${MARKERS}" ingest --out "${MARKER_FILE}" --stop-file "${DRILL_WORK}/stop" \
        --service "${service}" --rate "${DRILL_INGEST_RATE:-10}" "${destination[@]}" &
    INGEST_PID=$!
    trap ingest_cleanup EXIT
    wait_for "the first acknowledged marker" 60 test -s "${MARKER_FILE}" || return 1
    log "ingest running (${MARKER_TABLE}, ${DRILL_INGEST_RATE:-10}/s)"
}

ingest_stop() {
    touch "${DRILL_WORK}/stop"
    if [[ -n "${INGEST_PID}" ]]; then
        wait "${INGEST_PID}" || true
        INGEST_PID=""
    fi
}

ingest_cleanup() {
    [[ -z "${INGEST_PID}" ]] || ingest_stop
}

ingest_summary() {
    cat "${MARKER_FILE}.summary.json"
}

acked_count() {
    wc -l < "${MARKER_FILE}" | tr -d ' '
}

# The first marker acknowledged at or after EPOCH (its time), or nothing.
first_ack_after() {
    awk -v t="$1" -F'"acked_at": ' '{ split($2, a, "}"); if (a[1] + 0 >= t + 0) { print a[1]; exit } }' "${MARKER_FILE}"
}

# The first failed write at or after EPOCH, or EPOCH itself when none failed (a request
# in flight when the primary was killed may still be acknowledged: the outage the client
# sees starts with its first failure).
outage_seen_at() {
    local first
    first="$(awk -v t="$1" -F'"failed_at": ' '{ split($2, a, "}"); if (a[1] + 0 >= t + 0) { print a[1]; exit } }' \
        "${MARKER_FILE}.failures" 2>/dev/null)"
    echo "${first:-$1}"
}

has_ack_after() {
    [[ -n "$(first_ack_after "$1")" ]]
}

# markers_verify [verify options]: which acknowledged markers the current primary has.
markers_verify() {
    "${DRILLS_PY}" "${MARKERS}" verify --acked "${MARKER_FILE}" --service "${MARKER_SERVICE}" \
        --table "${MARKER_TABLE}" --dsn "$(driver_writer_dsn)" "$@"
}

# --- Checks shared by several drills ---------------------------------------------------

sql_primary() {
    driver_db_sql "$(driver_current_primary)" "$1"
}

is_writable() {
    [[ "$(driver_db_sql "$1" "SELECT NOT pg_is_in_recovery()")" == t ]]
}

streaming_replicas() {
    sql_primary "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
}

streaming_at_least() {
    (( $(streaming_replicas) >= $1 ))
}

pgbackrest_check() {
    driver_pgbackrest --stanza=apm check
}

# Active Prometheus alerts named NAME in any of the STATEs given (firing, pending), as a count.
prometheus_alert_count() {
    driver_prometheus "/api/v1/alerts" | "${DRILLS_PY}" -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
print(sum(1 for a in alerts if a["labels"].get("alertname") == sys.argv[1] and a["state"] in sys.argv[2:]))' "$@"
}

alert_firing() {
    (( $(prometheus_alert_count "$1" firing) > 0 ))
}

# Neither pending nor firing, in one answer of Prometheus (an unreachable one is not quiet).
alert_quiet() {
    local active
    active="$(prometheus_alert_count "$1" pending firing)" && (( active == 0 ))
}
