#!/usr/bin/env bash
# Drill 0: the state the other drills compare against: stored requests, WAL archiving,
# backups, and the app's readiness (single host with backups: make up backup-up).
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
require_docker

requests="$(sql_single "SELECT count(*) FROM observability_apirequest")"
archived="$(sql_single "SELECT archived_count FROM pg_stat_archiver")"
failed="$(sql_single "SELECT failed_count FROM pg_stat_archiver")"
backups="$("${SINGLE[@]}" exec -T backup pgbackrest-secrets --stanza=apm --output=json info \
    | grep -o '"label":"[^"]*"' | wc -l)"
ready="$("${SINGLE[@]}" exec -T web python -c \
    "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=5).status)")"

report baseline requests="${requests}" wal_archived="${archived}" wal_failed="${failed}" \
    backups="${backups}" readyz_status="${ready}"
