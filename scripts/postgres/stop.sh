#!/usr/bin/env bash
# Stops a cluster started by scripts/postgres/start.sh and removes its
# directory: scripts/postgres/stop.sh "$TOKEND_TEST_POSTGRES_STATE"
set -euo pipefail
state=${1:?usage: stop.sh STATE-DIRECTORY (TOKEND_TEST_POSTGRES_STATE)}
case "$state" in
/tmp/tokend-pg.*) ;;
*) echo "postgres: $state is not a directory made by start.sh" >&2; exit 1 ;;
esac
if [ -f "$state/data/postmaster.pid" ]; then
    pid=$(head -n 1 "$state/data/postmaster.pid")
    # SIGINT: PostgreSQL's fast shutdown (ends sessions, no waiting on clients).
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -rf "$state"
