#!/usr/bin/env bash
# Drill 2: the primary is killed (SIGKILL, as a crashed node) under a steady ingest load;
# replica1 is promoted and takes the writes; the other replica follows it; the old
# primary comes back as a replica of it (cloned again: its WAL may have gone past the
# promotion point).
# How writers find the new primary: their database URL lists every instance with
# target_session_attrs=read-write (libpq tries them in order and keeps the one that
# accepts writes), so nothing is reconfigured at failover; a client's failed request is
# retried and lands on the new primary.
# DRILL_SYNC=1 first restarts the primary in the shipped synchronous mode,
# DB_SYNCHRONOUS_STANDBY_NAMES (default here `FIRST 1 (replica1, replica2)`, as
# docs/DEPLOYMENT.md recommends), and waits for replica1 to be its synchronous standby:
# then no acknowledged marker may be lost. (The instances started before keep their own
# options: the promoted replica1 runs asynchronously, as it was started.) Without it
# (the default: asynchronous replication), what the primary acknowledged but had not
# yet sent to replica1 is lost, and the drill measures how much.
# Passes when the app writes again within DRILL_WRITABLE_TARGET seconds of the kill
# (15), the other replicas stream from the new primary, archiving works from it
# (`pgbackrest check`), and (with DRILL_SYNC=1) no acknowledged marker is lost.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_require
drill=02_failover${DRILL_SYNC:+_sync}
target_seconds="${DRILL_WRITABLE_TARGET:-15}"
old_primary="$(driver_current_primary)"
mapfile -t replicas < <(driver_replicas)
new_primary="${replicas[0]}"
followers=("${replicas[@]:1}")

if [[ -n "${DRILL_SYNC:-}" ]]; then
    # The option as the stacks pass it (a command-line option, which ALTER SYSTEM cannot
    # override): the restarted primary gets it from the environment, as Compose from
    # .env.cluster.
    listed="$(IFS=,; echo "${replicas[*]}")"
    export DB_SYNCHRONOUS_STANDBY_NAMES="${DB_SYNCHRONOUS_STANDBY_NAMES:-FIRST 1 (${listed//,/, })}"
    log "restarting ${old_primary} with synchronous_standby_names '${DB_SYNCHRONOUS_STANDBY_NAMES}'"
    driver_db_stop "${old_primary}"
    driver_db_start "${old_primary}"
    wait_for "${old_primary} to accept writes" 60 is_writable "${old_primary}" || fail "${drill}" "${old_primary} did not restart"
    sync_standby() {
        [[ "$(sql_primary "SELECT sync_state FROM pg_stat_replication WHERE application_name = '${new_primary}'")" == sync ]]
    }
    wait_for "${new_primary} to be the synchronous standby" 60 sync_standby || fail "${drill}" "no synchronous standby"
fi

ingest_start "drill-failover-$(date -u +%s)"
sleep "${DRILL_WARMUP_SECONDS:-10}"
log "SIGKILL ${old_primary}"
# From just before the signal: the times measured include the kill itself.
killed_at="$(now)"
driver_db_kill "${old_primary}"
driver_db_sql "${new_primary}" "SELECT pg_promote(true, 60)" >/dev/null || fail "${drill}" "pg_promote on ${new_primary} failed"
wait_for "${new_primary} to accept writes" 60 is_writable "${new_primary}" || fail "${drill}" "${new_primary} not writable"
promoted_at="$(now)"
driver_set_primary "${new_primary}"
# Slots for the other instances (they stream through their own) and the same pg_hba.conf.
driver_primary_setup "${new_primary}"
wait_for "a marker acknowledged by the new primary" 60 has_ack_after "${promoted_at}" \
    || fail "${drill}" "no write acknowledged after the failover"
# Writable again: the first acknowledgement after the first write that failed.
first_ack="$(first_ack_after "$(outage_seen_at "${killed_at}")")"

followed=()
recloned=()
for replica in "${followers[@]}"; do
    log "${replica} follows ${new_primary}"
    driver_follow "${replica}"
    is_streaming() {
        [[ "$(sql_primary "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$1' AND state = 'streaming'")" == 1 ]]
    }
    if wait_for "${replica} streaming from ${new_primary}" 60 is_streaming "${replica}"; then
        followed+=("${replica}")
    else
        # It replayed WAL of the old primary that the promoted replica never received.
        log "${replica} cannot follow (its timeline went past the promotion): cloning it again"
        driver_db_stop "${replica}"
        driver_db_destroy "${replica}"
        driver_db_start "${replica}"
        recloned+=("${replica}")
    fi
done
log "the old primary ${old_primary} comes back as a replica of ${new_primary}"
driver_db_destroy "${old_primary}"
driver_db_start "${old_primary}"
wait_for "every other instance streaming from ${new_primary}" 300 streaming_at_least 2 \
    || fail "${drill}" "the replicas do not stream from ${new_primary}"
sleep 5
ingest_stop
verify="$(markers_verify --incident-at "${killed_at}")"
log "markers: ${verify}"
wait_for "pgbackrest check from the new primary" 300 pgbackrest_check \
    || fail "${drill}" "pgbackrest check fails on the new primary" markers="${verify}"

to_json_list() {
    (( $# > 0 )) || { echo '[]'; return; }
    printf '[%s]' "$(printf '"%s",' "$@" | sed 's/,$//')"
}
lost="$(json_field "${verify}" lost_before_incident)"
writable="$(elapsed "${killed_at}" "${first_ack}")"
results=(writer="$(json_field "$(ingest_summary)" writer)" synchronous="$([[ -n "${DRILL_SYNC:-}" ]] && echo true || echo false)"
    synchronous_standby_names="${DB_SYNCHRONOUS_STANDBY_NAMES:-}"
    old_primary="${old_primary}" new_primary="${new_primary}"
    seconds_to_writable="${writable}" seconds_to_promoted="$(elapsed "${killed_at}" "${promoted_at}")"
    writable_target_seconds="${target_seconds}" acked_events_lost="${lost}"
    rpo_seconds="$(json_field "${verify}" rpo_seconds)" markers="${verify}" ingest="$(ingest_summary)"
    replicas_followed="$(to_json_list "${followed[@]}")" replicas_recloned="$(to_json_list "${recloned[@]}")"
    how_the_app_finds_the_primary="every instance in the database URL with target_session_attrs=read-write"
    checked="writes acknowledged after the kill within the target; other replicas stream from the new primary; old primary rejoined as a replica; pgbackrest check passes")
awk -v w="${writable}" -v t="${target_seconds}" 'BEGIN { exit !(w <= t) }' \
    || fail "${drill}" "writable after ${writable}s, over the ${target_seconds}s target" "${results[@]}"
[[ -z "${DRILL_SYNC:-}" || "${lost}" == 0 ]] \
    || fail "${drill}" "${lost} acknowledged markers lost with synchronous replication" "${results[@]}"
report "${drill}" result=passed "${results[@]}"
