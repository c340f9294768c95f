#!/usr/bin/env bash
# Step 2, cluster connectivity: TLS everywhere, replicas streaming, exporters up.
# TARGET=local (default) or deployed; reports in REPORT_DIR (see scripts/steps/step.sh).
STEP=2
# shellcheck source=steps/step.sh
source "$(dirname "$0")/steps/step.sh"
