#!/usr/bin/env bash
# One-shot after the database is up (single host, docker-compose.backup.yml): create the
# pgBackRest stanza in both repositories and run `pgbackrest check`, which forces a WAL
# switch and waits for the segment to reach the repository, so that a broken
# archive_command or unreachable MinIO fails the deployment now rather than at the
# first restore.
set -euo pipefail

STANZA="${PGBACKREST_STANZA:-apm}"

pgbackrest-secrets --stanza="${STANZA}" stanza-create
pgbackrest-secrets --stanza="${STANZA}" check
echo "pgbackrest: stanza ${STANZA} created and checked"
