#!/usr/bin/env bash
# Runs step 1 to step 6 (scripts/stepN_test.sh) against TARGET into one directory,
# reports/all_tests_<UTC timestamp>/: stepN-junit.xml, stepN-report.html and
# stepN-report.json per step, step 5's response samples, step 6's drill reports. Every step
# runs even when an earlier one failed; the exit status is non-zero if any failed.
#   TARGET=local scripts/run_all_tests.sh          (the local cluster: make cluster-local)
#   TARGET=deployed BASE_URL=... DATABASE_URL=... API_KEY=... scripts/run_all_tests.sh
#   STEPS="1 5" scripts/run_all_tests.sh            (a subset)
set -euo pipefail
cd "$(dirname "$0")/.."

export TARGET="${TARGET:-local}"
REPORT_DIR="${REPORT_DIR:-${PWD}/reports/all_tests_$(date -u +%Y%m%d_%H%M%S)}"
export REPORT_DIR
started="$(date +%s)"
failed=()
summary=()
for step in ${STEPS:-1 2 3 4 5 6}; do
    step_started="$(date +%s)"
    if "scripts/step${step}_test.sh"; then result=passed; else result=failed; failed+=("${step}"); fi
    summary+=("step${step} ${result} in $(( $(date +%s) - step_started ))s")
done
echo "== ${REPORT_DIR#"${PWD}/"} (TARGET=${TARGET}, $(( $(date +%s) - started ))s)"
printf '   %s\n' "${summary[@]}"
if (( ${#failed[@]} > 0 )); then
    echo "FAILED: step ${failed[*]}" >&2
    exit 1
fi
