#!/usr/bin/env bash
# Step 6, drills: baseline, primary restore, failover, S3 outage.
# TARGET=local (default) or deployed; reports in REPORT_DIR (see scripts/steps/step.sh).
STEP=6
# shellcheck source=steps/step.sh
source "$(dirname "$0")/steps/step.sh"
