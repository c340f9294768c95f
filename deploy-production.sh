#!/usr/bin/env bash
# The single-host production deploy (docker/docker-compose.yml), in order:
#   1. preflight  every secret the stack mounts is present, non-empty and not readable by
#                 others; the TLS certificate and its key match, the certificate names the
#                 host and is valid for DEPLOY_CERT_MIN_DAYS (30) more days; docker/.env.ports
#   2. pull, build   the images the stack runs (pull) and builds (web, db)
#   3. migrate       the one-shot migrate service, before the new web starts
#   4. up            the stack, waiting for its health checks
#   5. validate      /healthz and /readyz through Nginx TLS, verified with the certificate
# Stops at the first failure, naming it.
#   ./deploy-production.sh [--dry-run]
# --dry-run runs the preflight for real and prints the Docker commands instead of running
# them (no Docker engine needed). DEPLOY_HOST names the host the certificate must cover
# (default localhost). APM_SECRETS_DIR and APM_CERTS_DIR check other directories than
# docker/secrets and docker/certs (the stack itself always mounts those), DEPLOY_ENV_PORTS
# another port file than docker/.env.ports.
set -euo pipefail
cd "$(dirname "$0")"

DRY_RUN=false
case "${1:-}" in
    --dry-run) DRY_RUN=true ;;
    "") ;;
    *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac
SECRETS_DIR="${APM_SECRETS_DIR:-docker/secrets}"
CERTS_DIR="${APM_CERTS_DIR:-docker/certs}"
DEPLOY_HOST="${DEPLOY_HOST:-localhost}"
MIN_DAYS="${DEPLOY_CERT_MIN_DAYS:-30}"
ENV_PORTS="${DEPLOY_ENV_PORTS:-docker/.env.ports}"
COMPOSE=(docker compose -f docker/docker-compose.yml --env-file "${ENV_PORTS}")
# The secrets docker/docker-compose.yml mounts; gemini_api_key may be empty (no semantic search).
REQUIRED_SECRETS=(django_secret_key database_url db_superuser_password db_writer_password
    db_reader_password db_monitor_password db_replication_password grafana_admin_password)
OPTIONAL_SECRETS=(gemini_api_key)

log() {
    echo "[deploy $(date -u +%H:%M:%S)] $*"
}

fail() {
    echo "[deploy] FAILED: $*" >&2
    exit 1
}

run() {
    if [[ "${DRY_RUN}" == true ]]; then
        echo "+ (dry-run) $*"
    else
        echo "+ $*"
        "$@"
    fi
}

preflight_secrets() {
    local name file problems=()
    for name in "${REQUIRED_SECRETS[@]}" "${OPTIONAL_SECRETS[@]}"; do
        file="${SECRETS_DIR}/${name}"
        if [[ ! -f "${file}" ]]; then
            problems+=("${name}: missing")
        elif [[ ! -s "${file}" && " ${REQUIRED_SECRETS[*]} " == *" ${name} "* ]]; then
            problems+=("${name}: empty")
        elif (( 8#$(stat -c %a "${file}") & 8#004 )); then
            problems+=("${name}: readable by others (mode $(stat -c %a "${file}"))")
        fi
    done
    (( ${#problems[@]} == 0 )) || fail "secrets in ${SECRETS_DIR}: ${problems[*]} (make secrets)"
    log "preflight: ${#REQUIRED_SECRETS[@]} secrets present in ${SECRETS_DIR}, none readable by others"
}

preflight_certificate() {
    local cert="${CERTS_DIR}/public.crt" key="${CERTS_DIR}/private.key"
    [[ -s "${cert}" && -s "${key}" ]] || fail "no certificate ${cert} and key ${key} (make certs)"
    openssl x509 -in "${cert}" -noout 2>/dev/null || fail "${cert} is not a PEM certificate"
    [[ "$(openssl x509 -in "${cert}" -noout -pubkey | openssl sha256)" == "$(openssl pkey -in "${key}" -pubout | openssl sha256)" ]] \
        || fail "${key} is not the key of ${cert}"
    openssl x509 -in "${cert}" -noout -checkend $(( MIN_DAYS * 86400 )) >/dev/null \
        || fail "${cert} expires within ${MIN_DAYS} days ($(openssl x509 -in "${cert}" -noout -enddate))"
    openssl x509 -in "${cert}" -noout -checkhost "${DEPLOY_HOST}" | grep -q "does match" \
        || fail "${cert} does not name ${DEPLOY_HOST}"
    log "preflight: ${cert} matches its key, names ${DEPLOY_HOST}, $(openssl x509 -in "${cert}" -noout -enddate)"
}

preflight_environment() {
    [[ -s "${ENV_PORTS}" ]] || fail "${ENV_PORTS} is missing (cp docker/.env.ports.example docker/.env.ports)"
    if [[ "${DRY_RUN}" == false ]]; then
        if ! docker compose version >/dev/null 2>&1; then
            fail "a Docker engine with the Compose plugin is needed"
        fi
    fi
    log "preflight: ${ENV_PORTS} present"
}

validate() {
    local port url
    port="$(sed -n 's/^HTTPS_PORT=//p' "${ENV_PORTS}")"
    url="https://${DEPLOY_HOST}:${port:-443}"
    if [[ "${DRY_RUN}" == true ]]; then
        echo "+ (dry-run) curl --cacert ${CERTS_DIR}/public.crt ${url}/healthz ${url}/readyz"
        return 0
    fi
    curl -fsS --max-time 10 --cacert "${CERTS_DIR}/public.crt" "${url}/healthz" >/dev/null || fail "${url}/healthz"
    curl -fsS --max-time 10 --cacert "${CERTS_DIR}/public.crt" "${url}/readyz" || fail "${url}/readyz: not ready"
    echo
    log "validate: ${url} is live and ready"
}

started="$(date +%s)"
preflight_secrets
preflight_certificate
preflight_environment
log "pull and build"
run "${COMPOSE[@]}" pull --ignore-buildable
run "${COMPOSE[@]}" build
log "migrate"
run "${COMPOSE[@]}" run --rm migrate
log "up"
run "${COMPOSE[@]}" up -d --wait
log "validate"
validate
log "done in $(( $(date +%s) - started ))s$([[ "${DRY_RUN}" == true ]] && echo ' (dry run: nothing was changed)')"
