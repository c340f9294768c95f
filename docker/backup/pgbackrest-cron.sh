#!/usr/bin/env bash
# The backup schedule (pgbackrest-cron in the db and pgbackrest images).
#   - on start: creates the stanza if needed (idempotent) and, when the hot repository
#     has no backup yet, takes a full one at once, so point-in-time recovery is
#     possible from the first hour rather than from the first night;
#   - then every day at BACKUP_TIME (UTC, HH:MM): a differential backup to repo1 (hot),
#     or a full one on BACKUP_FULL_WEEKDAY (ISO day, 7 = Sunday), when repo2 (cold)
#     also gets its weekly full backup.
# After each attempt it writes node-exporter textfile metrics (one file per repository,
# replaced atomically): apm_backup_last_success_timestamp_seconds, _last_attempt_...,
# _last_status (1 ok, 0 failed) and _last_duration_seconds, labelled stanza and repo.
# Prometheus alerts on their age (docker/monitoring/alerts.yml).
set -uo pipefail

STANZA="${PGBACKREST_STANZA:-apm}"
BACKUP_TIME="${BACKUP_TIME:-01:00}"
BACKUP_FULL_WEEKDAY="${BACKUP_FULL_WEEKDAY:-7}"
METRICS_DIR="${BACKUP_METRICS_DIR:-/metrics}"
RETRY_SECONDS="${BACKUP_RETRY_SECONDS:-30}"

log() {
    printf '{"time": "%s", "component": "pgbackrest-cron", "message": "%s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

write_metrics() {
    local repo="$1" status="$2" started="$3" finished="$4" file last_success
    file="${METRICS_DIR}/apm_backup_repo${repo}.prom"
    last_success="$(sed -n 's/^apm_backup_last_success_timestamp_seconds{[^}]*} //p' "${file}" 2>/dev/null)"
    if [[ "${status}" == 1 ]]; then
        last_success="${finished}"
    fi
    {
        echo "# HELP apm_backup_last_success_timestamp_seconds End of the last successful backup."
        echo "# TYPE apm_backup_last_success_timestamp_seconds gauge"
        if [[ -n "${last_success}" ]]; then
            echo "apm_backup_last_success_timestamp_seconds{stanza=\"${STANZA}\",repo=\"${repo}\"} ${last_success}"
        fi
        echo "# HELP apm_backup_last_attempt_timestamp_seconds End of the last backup attempt."
        echo "# TYPE apm_backup_last_attempt_timestamp_seconds gauge"
        echo "apm_backup_last_attempt_timestamp_seconds{stanza=\"${STANZA}\",repo=\"${repo}\"} ${finished}"
        echo "# HELP apm_backup_last_status 1 if the last backup attempt succeeded, else 0."
        echo "# TYPE apm_backup_last_status gauge"
        echo "apm_backup_last_status{stanza=\"${STANZA}\",repo=\"${repo}\"} ${status}"
        echo "# HELP apm_backup_last_duration_seconds Duration of the last backup attempt."
        echo "# TYPE apm_backup_last_duration_seconds gauge"
        echo "apm_backup_last_duration_seconds{stanza=\"${STANZA}\",repo=\"${repo}\"} $((finished - started))"
    } > "${file}.tmp" && mv "${file}.tmp" "${file}"
}

backup() {
    local repo="$1" type="$2" started status=1
    started="$(date +%s)"
    log "backup starting: repo${repo}, type ${type}"
    if ! pgbackrest-secrets --stanza="${STANZA}" --repo="${repo}" --type="${type}" backup; then
        status=0
    fi
    write_metrics "${repo}" "${status}" "${started}" "$(date +%s)"
    log "backup finished: repo${repo}, type ${type}, status ${status}"
    [[ "${status}" == 1 ]]
}

has_backup() {
    pgbackrest-secrets --stanza="${STANZA}" --repo="$1" --output=json info 2>/dev/null \
        | grep -q '"backup":\[{'
}

ensure_stanza() {
    until pgbackrest-secrets --stanza="${STANZA}" stanza-create; do
        log "stanza-create failed; retrying in ${RETRY_SECONDS}s"
        sleep "${RETRY_SECONDS}"
    done
}

scheduled_backup() {
    if [[ "$(date -u +%u)" == "${BACKUP_FULL_WEEKDAY}" ]]; then
        backup 1 full
        backup 2 full
    else
        backup 1 diff
    fi
}

main() {
    mkdir -p "${METRICS_DIR}"
    ensure_stanza
    for repo in 1 2; do
        has_backup "${repo}" || backup "${repo}" full
    done
    log "schedule: daily at ${BACKUP_TIME} UTC, full on ISO weekday ${BACKUP_FULL_WEEKDAY}"
    while true; do
        # Wake at the start of the next minute, then compare the wall clock.
        sleep $((60 - 10#$(date -u +%S)))
        if [[ "$(date -u +%H:%M)" == "${BACKUP_TIME}" ]]; then
            scheduled_backup
        fi
    done
}

main
