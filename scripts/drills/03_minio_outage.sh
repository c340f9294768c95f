#!/usr/bin/env bash
# Drill 3: MinIO stops for OUTAGE_SECONDS (default 120). The database must keep
# accepting writes while WAL archiving fails (and is retried), then catch up once MinIO
# is back, with no gap: `pgbackrest check` passes again.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_docker
OUTAGE_SECONDS="${OUTAGE_SECONDS:-120}"

failed_before="$(sql_single "SELECT failed_count FROM pg_stat_archiver")"
log "stopping MinIO for ${OUTAGE_SECONDS}s"
"${SINGLE[@]}" stop minio
down_at="$(date +%s)"

sql_single "CREATE TABLE IF NOT EXISTS drill_outage (at timestamptz DEFAULT now())" >/dev/null
writes=0
while (( $(date +%s) - down_at < OUTAGE_SECONDS )); do
    sql_single "INSERT INTO drill_outage DEFAULT VALUES; SELECT pg_switch_wal()" >/dev/null
    writes=$((writes + 1))
    sleep 10
done
failed_during="$(sql_single "SELECT failed_count FROM pg_stat_archiver")"

log "starting MinIO"
"${SINGLE[@]}" start minio
wait_healthy minio 300
back_at="$(date +%s)"
until "${SINGLE[@]}" exec -T backup pgbackrest-secrets --stanza=apm check >/dev/null 2>&1; do
    sleep 5
done
caught_up=$(( $(date +%s) - back_at ))

if (( failed_during <= failed_before )); then
    log "archiving never failed during the outage: was MinIO really stopped?"
    report minio_outage result=inconclusive writes_during_outage="${writes}"
    exit 1
fi
report minio_outage result=passed writes_during_outage="${writes}" \
    archive_failures="$((failed_during - failed_before))" seconds_to_catch_up="${caught_up}"
