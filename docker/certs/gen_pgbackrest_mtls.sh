#!/usr/bin/env bash
# Mutual-TLS material for pgBackRest between the DATA node (client: the database host)
# and the CONTROL node (the repository server): a private CA, a server certificate for
# the repository host and a client certificate for the database host.
#   docker/certs/gen_pgbackrest_mtls.sh [repo-host-name] [db-host-name]
# Writes docker/certs/pgbackrest/ (never committed), or APM_CERTS_DIR/pgbackrest; the keys'
# group and mode are set by scripts/dev/bootstrap.sh (see there).
# APM_PGBACKREST_CERT_EXTRA_SAN adds names to both certificates (e.g. "DNS:localhost" for the
# local cluster, where both hosts are this machine); the common names, which the
# servers' tls-server-auth matches, stay the same.
set -euo pipefail

mkdir -p "${APM_CERTS_DIR:-$(dirname "$0")}"
cd "${APM_CERTS_DIR:-$(dirname "$0")}"
repo_host="${1:-pgbackrest}"
db_host="${2:-db}"
out=pgbackrest
mkdir -p "${out}"
umask 077

if [[ -f "${out}/ca.crt" ]]; then
    echo "${PWD}/pgbackrest: material exists (delete the directory to regenerate)"
    exit 0
fi

openssl req -x509 -newkey rsa:3072 -sha256 -days 3650 -nodes \
    -keyout "${out}/ca.key" -out "${out}/ca.crt" -subj "/CN=apm-pgbackrest-ca" 2>/dev/null

issue() {
    local name="$1" common_name="$2" names
    names="DNS:${common_name}${APM_PGBACKREST_CERT_EXTRA_SAN:+,${APM_PGBACKREST_CERT_EXTRA_SAN}}"
    openssl req -newkey rsa:3072 -sha256 -nodes \
        -keyout "${out}/${name}.key" -out "${out}/${name}.csr" -subj "/CN=${common_name}" 2>/dev/null
    openssl x509 -req -sha256 -days 825 -in "${out}/${name}.csr" \
        -CA "${out}/ca.crt" -CAkey "${out}/ca.key" -CAcreateserial \
        -extfile <(printf 'subjectAltName=%s' "${names}") -out "${out}/${name}.crt" 2>/dev/null
    rm -f "${out}/${name}.csr"
}

issue server "${repo_host}"
issue client "${db_host}"
chmod 644 "${out}"/*.crt
echo "${PWD}/pgbackrest: CA, server (${repo_host}) and client (${db_host}) certificates written"
