#!/usr/bin/env bash
# Drill 0: the state the other drills start from and compare to: requests stored,
# replication (every replica streaming from the primary), WAL archiving, the last backup of
# each repository, the app's readiness. Passes when replication, archiving and both
# repositories are healthy (and the app is ready, when the APP node runs).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
driver_require
drill=00_baseline

primary="$(driver_current_primary)"
if [[ "$(sql_primary "SELECT to_regclass('api_request') IS NOT NULL")" == t ]]; then
    requests="$(sql_primary "SELECT count(*) FROM api_request")"
else
    requests=null  # the app's schema is not on this database (APP node not migrated)
fi
replication="$(sql_primary "SELECT coalesce(json_agg(json_build_object('replica', application_name, 'state', state, 'ssl', ssl, 'replay_lag_seconds', coalesce(extract(epoch FROM replay_lag), 0)) ORDER BY application_name), '[]') FROM pg_stat_replication JOIN pg_stat_ssl USING (pid)")"
streaming="$(streaming_replicas)"
archiver="$(sql_primary "SELECT json_build_object('archived_count', archived_count, 'failed_count', failed_count, 'last_archived_wal', last_archived_wal, 'last_failed_wal', last_failed_wal, 'last_archived_age_seconds', round(extract(epoch FROM now() - last_archived_time)), 'failing', coalesce(last_failed_time > last_archived_time, false)) FROM pg_stat_archiver")"
archiving_failing="$(json_field "${archiver}" failing)"
# The last backup of each repository, from the repository host.
backups="$(driver_pgbackrest --stanza=apm --output=json info | "${DRILLS_PY}" -c '
import json, sys
stanza = json.load(sys.stdin)[0]
last = {}
for backup in stanza["backup"]:
    last[str(backup["database"]["repo-key"])] = {"label": backup["label"], "type": backup["type"],
        "stopped_at": backup["timestamp"]["stop"]}
print(json.dumps({"status": stanza["status"]["message"], "last": last}))')"
repos_with_backup="$("${DRILLS_PY}" -c 'import json, sys; print(len(json.loads(sys.argv[1])["last"]))' "${backups}")"
if driver_app_running; then
    readyz="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$(driver_app_ca)" "$(driver_app_url)/readyz")"
else
    readyz=null
fi

checks=(primary="${primary}" requests="${requests}" replicas_streaming="${streaming}" replication="${replication}"
    archiver="${archiver}" backups="${backups}" readyz_status="${readyz}")
(( streaming == 2 )) || fail "${drill}" "${streaming} replicas streaming, expected 2" "${checks[@]}"
[[ "${archiving_failing}" == False ]] || fail "${drill}" "WAL archiving is failing" "${checks[@]}"
(( repos_with_backup == 2 )) || fail "${drill}" "a repository has no backup" "${checks[@]}"
[[ "${readyz}" == null || "${readyz}" == 200 ]] || fail "${drill}" "/readyz answered ${readyz}" "${checks[@]}"
report "${drill}" result=passed "${checks[@]}"
