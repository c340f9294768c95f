#!/usr/bin/env bash
# Drill 2 (cluster DATA stack): the primary stops; replica1 is promoted. Passes when the
# promoted replica accepts writes; reports the time from stop to writable.
# Afterwards, by hand: point the app at the new primary (ports.data.primary in
# configs/cluster/cluster.yml, make cluster-config, make app-up), re-point replica2
# (PRIMARY_HOST) and rebuild the old primary as a replica from an empty volume.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_docker

sql_data() {
    "${DATA[@]}" exec -T "$1" psql -U postgres -d apm -At -v ON_ERROR_STOP=1 -c "$2"
}

streaming="$(sql_data db-primary "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")"
log "primary has ${streaming} streaming replicas; stopping it"
"${DATA[@]}" stop db-primary
stopped_at="$(date +%s)"

sql_data db-replica1 "SELECT pg_promote(true, 60)" >/dev/null
until [[ "$(sql_data db-replica1 "SELECT pg_is_in_recovery()")" == f ]]; do
    sleep 1
done
sql_data db-replica1 "CREATE TABLE IF NOT EXISTS drill_failover (at timestamptz DEFAULT now()); INSERT INTO drill_failover DEFAULT VALUES" >/dev/null
writable=$(( $(date +%s) - stopped_at ))

report failover_replica result=passed replicas_before="${streaming}" seconds_to_writable="${writable}"
