#!/usr/bin/env bash
# Drill 1: the primary's data directory is lost under ingest and restored from pgBackRest
# (the latest backup plus the archived WAL).
#   1. markers are ingested steadily (the app's API, or the primary directly without an
#      APP node) and their acknowledgements recorded;
#   2. `pgbackrest check` (on the repository host) forces a WAL switch and waits until that
#      segment is archived: every marker acknowledged before it started is in the archive;
#   3. the primary is killed, its data directory deleted, `pgbackrest restore` run, and
#      the primary started: it replays the archived WAL, then is writable (RTO);
#   4. the replicas, which were ahead of the restored primary, are cloned again from it.
# Passes when every marker acknowledged before the check is back; reports the markers
# lost after it (RPO in events and seconds) and the RTO.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_require
drill=01_primary_restore
primary="$(driver_current_primary)"
mapfile -t replicas < <(driver_replicas)

ingest_start "drill-restore-$(date -u +%s)"
sleep "${DRILL_WARMUP_SECONDS:-10}"
archived_before="$(now)"
log "pgbackrest check: WAL switch, waiting for the segment to be archived"
driver_pgbackrest --stanza=apm check >/dev/null || fail "${drill}" "pgbackrest check failed before the loss"
archived_at="$(now)"
# Markers acknowledged after the check are at risk: only WAL archived later has them.
sleep "${DRILL_AT_RISK_SECONDS:-5}"

log "killing ${primary} and deleting its data directory"
lost_at="$(now)"
driver_db_kill "${primary}"
driver_db_destroy "${primary}"
log "pgbackrest restore into ${primary}"
driver_db_restore "${primary}" >/dev/null || fail "${drill}" "pgbackrest restore failed"
restored_at="$(now)"
driver_db_start "${primary}"
# Accepting connections comes first (read-only while it replays the archived WAL);
# writable is when recovery has ended and it promoted itself.
wait_for "the restored ${primary} to end recovery" "${DRILL_RECOVERY_TIMEOUT:-600}" is_writable "${primary}" \
    || fail "${drill}" "the restored primary did not become writable"
writable_at="$(now)"
wait_for "a marker acknowledged after the restore" 120 has_ack_after "${writable_at}" || true
first_ack="$(first_ack_after "$(outage_seen_at "${lost_at}")")"
ingest_stop

verify="$(markers_verify --acked-before "${archived_before}" --incident-at "${lost_at}")"
log "markers: ${verify}"

log "cloning the replicas again from the restored ${primary} (their WAL went past it)"
driver_primary_setup "${primary}"
for replica in "${replicas[@]}"; do
    driver_db_stop "${replica}"
    driver_db_destroy "${replica}"
    driver_db_start "${replica}"
done
wait_for "both replicas streaming from the restored ${primary}" 300 streaming_at_least 2 \
    || fail "${drill}" "the replicas did not stream again" markers="${verify}"
log "pgbackrest check after the restore"
wait_for "pgbackrest check on the restored primary" 300 pgbackrest_check \
    || fail "${drill}" "pgbackrest check fails after the restore" markers="${verify}"

lost_before="$(json_field "${verify}" lost_acked_before_cutoff)"
results=(writer="$(json_field "$(ingest_summary)" writer)" markers="${verify}" ingest="$(ingest_summary)"
    rpo_events="$(json_field "${verify}" lost_before_incident)" rpo_seconds="$(json_field "${verify}" rpo_seconds)"
    rto_seconds="$(elapsed "${lost_at}" "${writable_at}")" restore_seconds="$(elapsed "${lost_at}" "${restored_at}")"
    seconds_to_first_ack_after_loss="$( [[ -n "${first_ack}" ]] && elapsed "${lost_at}" "${first_ack}" || echo null)"
    archive_check_seconds="$(elapsed "${archived_before}" "${archived_at}")"
    checked="markers acknowledged before pgbackrest check are back; replicas re-cloned and streaming; pgbackrest check passes")
(( lost_before == 0 )) || fail "${drill}" "${lost_before} markers acknowledged before the archive check are missing" "${results[@]}"
report "${drill}" result=passed "${results[@]}"
