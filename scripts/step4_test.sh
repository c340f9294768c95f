#!/usr/bin/env bash
# Step 4, backups: pgbackrest check and info, a differential backup, a verified restore.
# TARGET=local (default) or deployed; reports in REPORT_DIR (see scripts/steps/step.sh).
STEP=4
# shellcheck source=steps/step.sh
source "$(dirname "$0")/steps/step.sh"
