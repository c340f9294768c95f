#!/bin/sh
# Railway's variables into the settings this app reads (apm_platform/settings.py), for the
# container (railway.json sources it before migrate and gunicorn) and for an operator's
# shell (`railway run sh -c '. ./setup_railway_env.sh && python manage.py ...'`).
# Sourced, POSIX sh (the image's /bin/sh):
#   DATABASE_URL          kept if set (a reference to ${{Postgres.DATABASE_URL}}), else
#                         DATABASE_PRIVATE_URL, DATABASE_PUBLIC_URL, else built from
#                         PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE
#   ALLOWED_HOSTS         the service's public and private domains, and the host name of
#                         Railway's health checks (healthcheck.railway.app)
#   CSRF_TRUSTED_ORIGINS  https://<public domain>
#   USE_X_FORWARDED_PROTO true: Railway's edge terminates TLS
# Nothing already set is overridden. Fails (returns 1) without a database or SECRET_KEY.

railway_env_fail() {
    echo "setup_railway_env: $*" >&2
    return 1
}

railway_database_url() {
    for candidate in "${DATABASE_URL:-}" "${DATABASE_PRIVATE_URL:-}" "${DATABASE_PUBLIC_URL:-}"; do
        if [ -n "${candidate}" ]; then
            printf '%s\n' "${candidate}"
            return 0
        fi
    done
    [ -n "${PGHOST:-}" ] && [ -n "${PGUSER:-}" ] && [ -n "${PGDATABASE:-}" ] || return 1
    # The password may hold any character: percent-encoded by Python (the image has it).
    python3 -c 'import os, urllib.parse
env = os.environ
quote = lambda name: urllib.parse.quote(env.get(name, ""), safe="")
print("postgres://%s:%s@%s:%s/%s" % (quote("PGUSER"), quote("PGPASSWORD"), env["PGHOST"],
      env.get("PGPORT") or 5432, quote("PGDATABASE")))'
}

railway_setup() {
    DATABASE_URL="$(railway_database_url)" || {
        railway_env_fail "no database: set DATABASE_URL (\${{Postgres.DATABASE_URL}}) or PGHOST, PGUSER, PGPASSWORD, PGDATABASE"
        return 1
    }
    export DATABASE_URL
    [ -n "${SECRET_KEY:-}${SECRET_KEY_FILE:-}" ] || { railway_env_fail "SECRET_KEY is not set"; return 1; }
    if [ -z "${ALLOWED_HOSTS:-}" ]; then
        ALLOWED_HOSTS="healthcheck.railway.app"
        for domain in "${RAILWAY_PUBLIC_DOMAIN:-}" "${RAILWAY_PRIVATE_DOMAIN:-}"; do
            [ -z "${domain}" ] || ALLOWED_HOSTS="${ALLOWED_HOSTS},${domain}"
        done
        export ALLOWED_HOSTS
    fi
    if [ -z "${CSRF_TRUSTED_ORIGINS:-}" ] && [ -n "${RAILWAY_PUBLIC_DOMAIN:-}" ]; then
        export CSRF_TRUSTED_ORIGINS="https://${RAILWAY_PUBLIC_DOMAIN}"
    fi
    export USE_X_FORWARDED_PROTO="${USE_X_FORWARDED_PROTO:-true}"
}

railway_setup
