#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for the tests (Debian's
# postgresql-15, installed by scripts/setup.sh; this script installs
# nothing): initdb in a fresh temporary directory, listening on a Unix
# socket in that directory and on 127.0.0.1 (a free port, TLS offered with
# a throwaway CA's certificate), with a test
# role and database whose password sits in a 0600 file. Prints the
# environment the tests read, as `export` lines:
#
#     eval "$(scripts/postgres/start.sh)"
#
# Stop it (and remove its directory) with:
#     scripts/postgres/stop.sh "$TOKEND_TEST_POSTGRES_STATE"
#
# initdb refuses to run as root, so as root the cluster runs as the
# `postgres` user that the Debian package creates; otherwise as the caller.
set -euo pipefail
bin=${TOKEND_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}
for tool in initdb pg_ctl postgres psql; do
    if [ ! -x "$bin/$tool" ]; then
        echo "postgres: $bin/$tool is missing; install Debian's postgresql-15 (scripts/setup.sh does)" >&2
        exit 1
    fi
done

if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        echo "postgres: running as root needs the postgres user (created by Debian's postgresql-15)" >&2
        exit 1
    fi
    owner=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    owner=$(id -un)
    as_owner() { "$@"; }
fi

state=$(mktemp -d /tmp/tokend-pg.XXXXXX)
# The owner must reach its data and socket directories; nobody else needs to list them.
chmod 0711 "$state"
# A failed start leaves nothing behind (its logs are printed first).
trap 'status=$?; if [ "$status" -ne 0 ]; then rm -rf "$state"; fi' EXIT
mkdir -m 0700 "$state/data" && mkdir -m 0755 "$state/socket"
chown "$owner" "$state/data" "$state/socket"

# Passwords from /dev/urandom, in files only the caller (and, for the
# superuser's, the cluster owner) can read; never on a command line.
umask 077
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/superuser.password"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/password"
chmod 0600 "$state/superuser.password" "$state/password"
cp "$state/superuser.password" "$state/superuser.pwfile"
chown "$owner" "$state/superuser.pwfile"

# TLS for the verify-full and require tests: a throwaway CA and a server
# certificate for 127.0.0.1 (scripts/make-test-ca.sh), and a second CA that
# did not sign it.
here=$(cd "$(dirname "$0")" && pwd)
"$here/../make-test-ca.sh" "$state/tls" >&2
"$here/../make-test-ca.sh" "$state/other-ca" >&2
install -o "$owner" -m 0600 "$state/tls/server.key" "$state/data-server.key"
install -o "$owner" -m 0644 "$state/tls/server.pem" "$state/data-server.pem"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# scram-sha-256 everywhere, on the socket too: the tests log in with the password.
as_owner "$bin/initdb" -D "$state/data" -U postgres --auth=scram-sha-256 \
    --pwfile="$state/superuser.pwfile" -E UTF8 --locale=C.UTF-8 >"$state/initdb.log" 2>&1 || {
    echo "postgres: initdb failed; its log:" >&2
    cat "$state/initdb.log" >&2
    exit 1
}
rm -f "$state/superuser.pwfile"

# fsync=off: a test cluster lives in /tmp for one run; a restart of the
# server (not of the machine) still keeps every committed transaction.
if ! as_owner "$bin/pg_ctl" -D "$state/data" -l "$state/data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $state/socket -c fsync=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$state/data-server.pem -c ssl_key_file=$state/data-server.key" start >&2; then
    echo "postgres: the server did not start; its log:" >&2
    cat "$state/data/server.log" >&2 || true
    exit 1
fi
pid=$(head -n 1 "$state/data/postmaster.pid")

# Passwords reach psql through a 0600 passfile and stdin, never argv.
printf '127.0.0.1:%s:*:postgres:%s\n' "$port" "$(cat "$state/superuser.password")" >"$state/pgpass"
# Hex only (from od above), so it is safe inside an SQL string literal.
password=$(cat "$state/password")
if ! PGPASSFILE="$state/pgpass" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres >&2 <<SQL; then
CREATE ROLE tokend_test LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE tokend_test OWNER tokend_test;
SQL
    echo "postgres: creating the test role failed; the server log:" >&2
    cat "$state/data/server.log" >&2 || true
    kill "$pid" 2>/dev/null || true
    exit 1
fi

echo "export TOKEND_TEST_POSTGRES_URL=postgresql://tokend_test@127.0.0.1:$port/tokend_test" \
    "TOKEND_TEST_POSTGRES_HOST=127.0.0.1 TOKEND_TEST_POSTGRES_PORT=$port" \
    "TOKEND_TEST_POSTGRES_SOCKET=$state/socket/.s.PGSQL.$port" \
    "TOKEND_TEST_POSTGRES_USER=tokend_test TOKEND_TEST_POSTGRES_DATABASE=tokend_test" \
    "TOKEND_TEST_POSTGRES_PASSWORD_FILE=$state/password" \
    "TOKEND_TEST_POSTGRES_CA_FILE=$state/tls/ca.pem TOKEND_TEST_POSTGRES_OTHER_CA_FILE=$state/other-ca/ca.pem" \
    "TOKEND_TEST_POSTGRES_PID=$pid TOKEND_TEST_POSTGRES_STATE=$state"
