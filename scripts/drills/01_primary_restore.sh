#!/usr/bin/env bash
# Drill 1: lose the database's data directory and restore it from pgBackRest (latest
# backup plus archived WAL). Passes when a row committed just before the loss is back;
# reports the time from loss to a healthy database (RTO).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_docker

marker="drill-$(date -u +%s)"
requests_before="$(sql_single "SELECT count(*) FROM observability_apirequest")"
sql_single "CREATE TABLE IF NOT EXISTS drill_marker (label text PRIMARY KEY, at timestamptz DEFAULT now())" >/dev/null
sql_single "INSERT INTO drill_marker (label) VALUES ('${marker}')" >/dev/null
# Forces a WAL switch and waits until the segment with the marker is in the repository.
"${SINGLE[@]}" exec -T backup pgbackrest-secrets --stanza=apm check

log "stopping the app and the database, deleting the data directory"
"${SINGLE[@]}" stop web jobs backup db
lost_at="$(date +%s)"
"${SINGLE[@]}" run --rm --no-deps --entrypoint bash backup -c \
    'find /home/postgres/pgdata/data -mindepth 1 -delete && pgbackrest-secrets --stanza=apm restore'

log "starting the restored database"
"${SINGLE[@]}" start db
wait_healthy db 600
# Healthy means accepting connections, which a restored server does (read-only) while it
# still replays the archived WAL: writable is when recovery has ended.
until [[ "$(sql_single "SELECT pg_is_in_recovery()")" == f ]]; do
    sleep 1
done
rto=$(( $(date +%s) - lost_at ))
"${SINGLE[@]}" start backup web jobs

found="$(sql_single "SELECT count(*) FROM drill_marker WHERE label = '${marker}'")"
requests_after="$(sql_single "SELECT count(*) FROM observability_apirequest")"
if [[ "${found}" != 1 || "${requests_after}" != "${requests_before}" ]]; then
    report primary_restore result=failed marker_found="${found}" requests_before="${requests_before}" \
        requests_after="${requests_after}" rto_seconds="${rto}"
    exit 1
fi
report primary_restore result=passed requests="${requests_after}" rto_seconds="${rto}"
