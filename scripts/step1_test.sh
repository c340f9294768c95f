#!/usr/bin/env bash
# Step 1, functional: health, auth, ingest, CRUD, filters, error groups.
# TARGET=local (default) or deployed; reports in REPORT_DIR (see scripts/steps/step.sh).
STEP=1
# shellcheck source=steps/step.sh
source "$(dirname "$0")/steps/step.sh"
