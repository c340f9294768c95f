#!/usr/bin/env bash
# Step 3, roles and routing: writer, reader, replicas, read-after-write.
# TARGET=local (default) or deployed; reports in REPORT_DIR (see scripts/steps/step.sh).
STEP=3
# shellcheck source=steps/step.sh
source "$(dirname "$0")/steps/step.sh"
