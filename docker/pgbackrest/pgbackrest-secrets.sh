#!/usr/bin/env bash
# pgbackrest with the repository's S3 secret key and encryption passphrase taken from
# Docker secrets, so that neither is ever written to a config file. Where a secret is
# not mounted (the database host of the cluster, which never talks to S3), pgbackrest
# runs without it. Installed as /usr/local/bin/pgbackrest-secrets in the db and
# pgbackrest images; archive_command and the backup jobs call it.
set -euo pipefail

secrets_dir="${SECRETS_DIR:-/run/secrets}"

if [[ -r "${secrets_dir}/pgbackrest_s3_secret" ]]; then
    s3_secret="$(tr -d '\n' < "${secrets_dir}/pgbackrest_s3_secret")"
    export PGBACKREST_REPO1_S3_KEY_SECRET="${s3_secret}" PGBACKREST_REPO2_S3_KEY_SECRET="${s3_secret}"
fi
if [[ -r "${secrets_dir}/pgbackrest_cipher_pass" ]]; then
    cipher_pass="$(tr -d '\n' < "${secrets_dir}/pgbackrest_cipher_pass")"
    export PGBACKREST_REPO1_CIPHER_PASS="${cipher_pass}" PGBACKREST_REPO2_CIPHER_PASS="${cipher_pass}"
fi

exec pgbackrest "$@"
