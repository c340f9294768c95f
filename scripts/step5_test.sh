#!/usr/bin/env bash
# Step 5, seed and analytics: KPIs and rankings equal to raw SQL.
# TARGET=local (default) or deployed; reports in REPORT_DIR (see scripts/steps/step.sh).
STEP=5
# shellcheck source=steps/step.sh
source "$(dirname "$0")/steps/step.sh"
