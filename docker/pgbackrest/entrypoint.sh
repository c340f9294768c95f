#!/usr/bin/env bash
# Entrypoint of the pgBackRest repository host.
#   server   `pgbackrest server` (mutual TLS, port 8432) and the backup schedule; the
#            container stops when either stops, so that Docker restarts it
#   cron     the backup schedule only
#   *        anything else, with the repository secrets (e.g. `pgbackrest-secrets info`)
set -euo pipefail

case "${1:-server}" in
    server)
        pgbackrest-secrets server &
        pgbackrest-cron &
        wait -n
        echo "pgbackrest-entrypoint: a process exited; stopping" >&2
        exit 1
        ;;
    cron)
        exec pgbackrest-cron
        ;;
    *)
        exec "$@"
        ;;
esac
