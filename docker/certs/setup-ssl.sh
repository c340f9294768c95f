#!/usr/bin/env bash
# The deployment's TLS certificate: Nginx (app and monitoring proxy), PostgreSQL on the
# DATA node, and the exporters Prometheus scrapes across nodes. Self-signed; its
# subject alternative names include the node names apm-app, apm-data and apm-control,
# which the cluster stacks map to the node addresses (extra_hosts), so that every
# cross-node connection verifies this certificate. Replace it with your CA's in
# production (same file names).
#   docker/certs/setup-ssl.sh [common-name] [extra-DNS-name...]
# Writes docker/certs/public.crt and private.key (never committed), or into APM_CERTS_DIR
# (the local cluster's state directory); the key's group and mode are set by
# scripts/dev/bootstrap.sh (see there).
set -euo pipefail

out="${APM_CERTS_DIR:-$(dirname "$0")}"
mkdir -p "${out}"
cd "${out}"
common_name="${1:-localhost}"
shift || true
san="DNS:${common_name},DNS:localhost,IP:127.0.0.1,DNS:apm-app,DNS:apm-data,DNS:apm-control"
for name in "$@"; do
    san="${san},DNS:${name}"
done

if [[ -f private.key && -f public.crt ]]; then
    echo "${PWD}: certificate exists (delete public.crt and private.key to renew)"
    exit 0
fi
umask 077
openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes \
    -keyout private.key -out public.crt \
    -subj "/CN=${common_name}" -addext "subjectAltName=${san}" 2>/dev/null
chmod 644 public.crt
echo "${PWD}: self-signed certificate for ${common_name} written"
