#!/usr/bin/env bash
# Self-signed TLS certificate for MinIO (host name "minio"), trusted by pgBackRest as its
# CA file: docker/certs/minio/public.crt and private.key (never committed), or under
# APM_CERTS_DIR (the local cluster's S3 server uses it too). Idempotent.
set -euo pipefail

out="${APM_CERTS_DIR:-$(cd "$(dirname "$0")/../certs" && pwd)}/minio"
mkdir -p "${out}"
if [[ -f "${out}/private.key" ]]; then
    echo "${out}: certificate exists (delete the directory to renew)"
    exit 0
fi
umask 077
openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes \
    -keyout "${out}/private.key" -out "${out}/public.crt" \
    -subj "/CN=minio" -addext "subjectAltName=DNS:minio,DNS:localhost,IP:127.0.0.1" 2>/dev/null
chmod 644 "${out}/public.crt"
echo "${out}: self-signed certificate for minio written"
