#!/usr/bin/env bash
# Drill 3: the S3 server (MinIO; SeaweedFS on the local cluster) is stopped for
# OUTAGE_SECONDS (120) under a steady ingest load.
#   - ingest keeps being acknowledged: archiving is asynchronous, writes never wait for S3;
#   - WAL archiving fails (pg_stat_archiver.failed_count grows) and the shipped alert
#     ApmWalArchivingFailing fires in Prometheus (read from its HTTP API; the rule's
#     `for: 5m` means it fires about five minutes after the first failure);
#   - once S3 is back the archive catches up and `pgbackrest check` passes.
# During the outage the primary switches WAL segment every 10 s (pg_switch_wal), so that
# archiving is attempted within the two minutes: a 16 MB segment takes longer to fill at
# the drill's ingest rate.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_require
drill=03_minio_outage
OUTAGE_SECONDS="${OUTAGE_SECONDS:-120}"
ALERT=ApmWalArchivingFailing
alert_timeout="${DRILL_ALERT_TIMEOUT:-540}"
alert_clear_timeout="${DRILL_ALERT_CLEAR_TIMEOUT:-1260}"

archiver_failed() {
    sql_primary "SELECT failed_count FROM pg_stat_archiver"
}

# The alert must be quiet first, or its firing would prove nothing about this outage. It
# stays firing for up to 15 minutes after an earlier outage (the rule's increase() window),
# so a drill run soon after another one waits for it to resolve rather than failing.
if ! alert_quiet "${ALERT}"; then
    log "${ALERT} is pending or firing from an earlier archiving failure; waiting for it to resolve"
    wait_for "${ALERT} to resolve" "${alert_clear_timeout}" alert_quiet "${ALERT}" \
        || fail "${drill}" "${ALERT} already fires before the outage and did not resolve within ${alert_clear_timeout}s"
fi
failed_before="$(archiver_failed)"
ingest_start "drill-s3-outage-$(date -u +%s)"
sleep "${DRILL_WARMUP_SECONDS:-10}"
acked_before_outage="$(acked_count)"

log "stopping the S3 server for ${OUTAGE_SECONDS}s"
driver_s3_stop
down_at="$(now)"
switches=0
while awk -v s="${down_at}" -v n="$(now)" -v d="${OUTAGE_SECONDS}" 'BEGIN { exit !(n - s < d) }'; do
    sql_primary "SELECT pg_switch_wal()" >/dev/null
    switches=$((switches + 1))
    sleep 10
done
failed_during="$(archiver_failed)"
acked_during="$(( $(acked_count) - acked_before_outage ))"
pending="$(prometheus_alert_count "${ALERT}" pending)"

log "starting the S3 server"
driver_s3_start
wait_for "the S3 server to answer" 120 driver_s3_ready || fail "${drill}" "the S3 server did not come back"
back_at="$(now)"
wait_for "pgbackrest check to pass (archive caught up)" 600 pgbackrest_check \
    || fail "${drill}" "pgbackrest check still fails after the outage"
caught_up_at="$(now)"
ingest_stop
log "waiting for ${ALERT} to fire in Prometheus (up to ${alert_timeout}s)"
alert_fired=false
if wait_for "${ALERT} firing" "${alert_timeout}" alert_firing "${ALERT}"; then
    alert_fired=true
fi
alert_checked_at="$(now)"
summary="$(ingest_summary)"
verify="$(markers_verify --after 0)"

results=(writer="$(json_field "${summary}" writer)" outage_seconds="${OUTAGE_SECONDS}" wal_switches="${switches}"
    acked_during_outage="${acked_during}" ingest="${summary}" markers="${verify}"
    archive_failures="$(( failed_during - failed_before ))" alert="${ALERT}" alert_pending_during_outage="${pending}"
    alert_fired="${alert_fired}" seconds_from_outage_to_alert_check="$(elapsed "${down_at}" "${alert_checked_at}")"
    seconds_to_catch_up="$(elapsed "${back_at}" "${caught_up_at}")"
    checked="ingest acknowledged during the outage with no failed write; archiving failed; the alert fired (Prometheus API); pgbackrest check passes after")
(( acked_during > 0 )) || fail "${drill}" "no marker acknowledged during the outage" "${results[@]}"
[[ "$(json_field "${summary}" failed)" == 0 ]] || fail "${drill}" "writes failed during the outage" "${results[@]}"
[[ "$(json_field "${verify}" lost)" == 0 ]] || fail "${drill}" "acknowledged markers are missing" "${results[@]}"
(( failed_during > failed_before )) || fail "${drill}" "archiving never failed: was the S3 server stopped?" "${results[@]}"
[[ "${alert_fired}" == true ]] || fail "${drill}" "${ALERT} did not fire within ${alert_timeout}s" "${results[@]}"
report "${drill}" result=passed "${results[@]}"
