#!/usr/bin/env bash
# Entrypoint of the web image.
#   migrate          wait for the database, apply migrations, exit (the one-shot service)
#   anything else    wait for the database, then run it (gunicorn by default);
#                    MIGRATE_ON_START=true also migrates first (single-container setups)
set -euo pipefail

DB_WAIT_SECONDS="${DB_WAIT_SECONDS:-60}"

wait_for_database() {
    python manage.py wait_for_db --timeout "${DB_WAIT_SECONDS}"
}

if [[ "${1:-}" == "migrate" ]]; then
    wait_for_database
    exec python manage.py migrate --noinput
fi

wait_for_database
if [[ "${MIGRATE_ON_START:-false}" == "true" ]]; then
    python manage.py migrate --noinput
fi

# Per-worker metric files from a previous run would be summed into /metrics.
if [[ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]]; then
    rm -rf "${PROMETHEUS_MULTIPROC_DIR}"
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
fi

exec "$@"
