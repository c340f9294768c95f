#!/usr/bin/env bash
# Shared by scripts/step1_test.sh ... step6_test.sh (sourced, with STEP set): runs one step's
# checks (python -m scripts.steps) against TARGET and writes its reports into REPORT_DIR
# (default: a new reports/all_tests_<UTC timestamp>/; run_all_tests.sh sets one for all six).
#   TARGET=local     the local cluster (make cluster-local)
#   TARGET=deployed  a running stack: BASE_URL, DATABASE_URL, API_KEY, ADMIN_API_KEY,
#                    READ_API_KEY; optional MONITORING_URL, CA_FILE, DATABASE_READER_URLS
#                    (comma-separated), DATABASE_MONITOR_URL
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${TARGET:-local}"
REPORT_DIR="${REPORT_DIR:-${ROOT}/reports/all_tests_$(date -u +%Y%m%d_%H%M%S)}"
STEPS_PY="${STEPS_PY:-${ROOT}/.venv/bin/python}"

case "${TARGET}" in
    local) target_options=() ;;
    deployed)
        target_options=(--base-url "${BASE_URL:-}" --monitoring-url "${MONITORING_URL:-}" --ca-file "${CA_FILE:-}"
            --database-url "${DATABASE_URL:-}" --database-reader-urls "${DATABASE_READER_URLS:-}"
            --database-monitor-url "${DATABASE_MONITOR_URL:-}" --api-key "${API_KEY:-}"
            --admin-api-key "${ADMIN_API_KEY:-}" --read-api-key "${READ_API_KEY:-}") ;;
    *) echo "TARGET must be local or deployed, not '${TARGET}'" >&2; exit 2 ;;
esac

mkdir -p "${REPORT_DIR}"
cd "${ROOT}"
exec "${STEPS_PY}" -m scripts.steps "${STEP}" --target "${TARGET}" --reports "${REPORT_DIR}" "${target_options[@]}"
