#!/usr/bin/env bash
# Connects to the Railway database with the settings setup_railway_env.sh derives and
# reports the server version and the extensions the app uses: vector (pgvector: semantic
# search, sketches merged in SQL) and timescaledb (the timescale analytics backend), each
# installed, available to install, or missing. Exits 1 if the database cannot be reached
# or the server is older than PostgreSQL 15.
#   railway run ./check_railway_db.sh      (or with DATABASE_URL / PG* set by hand)
#   ./check_railway_db.sh --json
set -euo pipefail
cd "$(dirname "$0")"

# shellcheck source=setup_railway_env.sh
. ./setup_railway_env.sh
command -v psql >/dev/null 2>&1 || { echo "check_railway_db: psql is needed (postgresql-client)" >&2; exit 2; }

report="$(psql "${DATABASE_URL}" -X -q -At -v ON_ERROR_STOP=1 -c "
SELECT json_build_object(
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'database', current_database(), 'user', current_user,
  'ssl', coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),
  'extensions', (SELECT json_object_agg(name, CASE WHEN installed_version IS NOT NULL
                   THEN 'installed ' || installed_version ELSE 'available ' || default_version END)
                 FROM pg_available_extensions WHERE name IN ('vector', 'timescaledb')))")" || {
    echo "check_railway_db: cannot query the database (see above)" >&2
    exit 1
}

if [[ "${1:-}" == "--json" ]]; then
    echo "${report}"
else
    python3 - "${report}" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
ext = r["extensions"] or {}
print(f"PostgreSQL {r['server_version']} ({r['database']} as {r['user']}, TLS {'on' if r['ssl'] else 'off'})")
for name in ("vector", "timescaledb"):
    print(f"  {name}: {ext.get(name, 'missing')}")
PY
fi
version_num="$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["server_version_num"])' "${report}")"
if (( version_num < 150000 )); then
    echo "check_railway_db: PostgreSQL 15 or later is needed" >&2
    exit 1
fi
