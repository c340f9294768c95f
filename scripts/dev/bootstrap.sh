#!/usr/bin/env bash
# Prepare the Docker stacks on this host (make secrets certs): random secrets in
# docker/secrets/ and the TLS material in docker/certs/. Idempotent: existing files are
# kept. Run it as root (or the Ansible roles do): see "Who can read secrets" below.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
# Elsewhere than docker/ for the local cluster (scripts/cluster/local.sh: .cluster-local/).
secrets="${APM_SECRETS_DIR:-${root}/docker/secrets}"
certs="${APM_CERTS_DIR:-${root}/docker/certs}"
export APM_CERTS_DIR="${certs}"
# Group of every secret and private key. Containers read them through bind mounts, as
# their own users: the database and pgBackRest images run as 1000:1000; the web app,
# exporters and Grafana are given this group (group_add in the Compose files).
# PostgreSQL and pgBackRest accept a key owned by root with mode 0640, not a
# world-readable one.
SECRETS_GID="${APM_SECRETS_GID:-1000}"

random_secret() {
    openssl rand -base64 36 | tr -d '/+=\n' | cut -c1-40
}

generate_secrets() {
    mkdir -p "${secrets}"
    local name
    for name in django_secret_key db_superuser_password db_writer_password db_reader_password \
                db_replication_password db_monitor_password grafana_admin_password minio_root_password \
                pgbackrest_s3_secret pgbackrest_cipher_pass prometheus_proxy_password; do
        if [[ ! -s "${secrets}/${name}" ]]; then
            (umask 077 && random_secret > "${secrets}/${name}")
            echo "${secrets#"${root}/"}/${name}: generated"
        fi
    done
    # The app's database URL, built from the writer password (db: the Compose service).
    if [[ ! -s "${secrets}/database_url" ]]; then
        (umask 077 && printf 'postgres://apm_writer:%s@db:5432/apm\n' \
            "$(cat "${secrets}/db_writer_password")" > "${secrets}/database_url")
        echo "${secrets#"${root}/"}/database_url: generated"
    fi
    # Basic auth of the monitoring proxy in front of Prometheus (user "prometheus").
    if [[ ! -s "${secrets}/prometheus_htpasswd" ]]; then
        (umask 077 && printf 'prometheus:%s\n' \
            "$(openssl passwd -apr1 "$(cat "${secrets}/prometheus_proxy_password")")" \
            > "${secrets}/prometheus_htpasswd")
        echo "${secrets#"${root}/"}/prometheus_htpasswd: generated"
    fi
    # MinIO's entrypoint wants the root user as a secret file too; it is not secret.
    [[ -s "${secrets}/minio_root_user" ]] || echo "apm-minio-admin" > "${secrets}/minio_root_user"
    # Empty unless semantic search with Gemini is wanted (EMBEDDING_PROVIDER=gemini).
    (umask 077 && touch "${secrets}/gemini_api_key")
}

# Who can read secrets: root and the group SECRETS_GID, nobody else.
protect_private_files() {
    local files=("${secrets}"/* "${certs}"/*.key "${certs}"/*/*.key)
    if [[ "$(id -u)" != 0 ]]; then
        echo "bootstrap: not root, so secrets stay readable by $(id -un) only;" \
             "containers running as other users will not read them (run as root)" >&2
        return
    fi
    local file
    for file in "${files[@]}"; do
        # The CA's key signs certificates; no container needs it.
        [[ -f "${file}" && "${file}" != */ca.key ]] || continue
        chown "root:${SECRETS_GID}" "${file}"
        chmod 0640 "${file}"
    done
    # Password hashes, not passwords: the monitoring proxy's worker (user nginx) reads it.
    for file in "${secrets}"/*_htpasswd; do
        chmod 0644 "${file}"
    done
}

generate_secrets
"${root}/docker/certs/setup-ssl.sh" "${APM_HOSTNAME:-localhost}"
"${root}/docker/certs/gen_pgbackrest_mtls.sh"
"${root}/docker/minio/gen-minio-cert.sh"
protect_private_files
