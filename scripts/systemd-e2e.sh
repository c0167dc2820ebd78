#!/usr/bin/env bash
# End-to-end test of the Debian package under a real systemd: a Debian 12
# container (scripts/debian-root.sh) booted with systemd-nspawn, the package
# installed with apt, configured by running the shell blocks of
# docs/install.md (each marked <!-- step: NAME -->; every one must run),
# against a fake OAuth2 provider over HTTPS with a private CA inside the
# container (scripts/fake-oauth2-https.py, certificate by
# scripts/make-test-ca.sh). It asserts:
#   - lintian finds nothing unexplained in the package;
#   - socket activation: the agent starts on the first connection;
#   - /run/tokend and the socket keep modes that let tokend-clients connect;
#   - an allowed member of tokend-clients gets its token, a member no rule
#     allows gets ERR forbidden, a non-member cannot connect and the CLI
#     says why (the message docs/install.md shows);
#   - the vault key as an encrypted credential (systemd-creds) works;
#   - `systemctl reload tokend` applies an edited configuration;
#   - a hung agent (SIGSTOP) is restarted by the watchdog and serves again;
#   - an upgrade to a newer package restarts the agent, keeps the edited
#     conffile, a client loop running across it sees no failure, and no
#     refresh token is lost (the provider never answers invalid_grant);
#   - `systemctl stop` exits 0 with result success;
#   - the fleet store (docs/fleet.md, "Running it under systemd", its
#     marked blocks run the same way): PostgreSQL 15 in the container, the
#     drop-in systemd/tokend-fleet.conf, the database password as an
#     encrypted credential, the SQLite vault moved with `vault migrate`;
#     the agent serves and refreshes through the store, a PostgreSQL
#     restart fails no client request and the agent reconnects;
#   - `systemd-analyze security` rates the installed unit at most 2.0;
#   - the journal holds no permission error and no secret;
#   - `apt remove` keeps the vault, key and configuration; `apt purge`
#     deletes them.
#
#   scripts/systemd-e2e.sh [--binary PATH]     (as root; default: build one)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=""
if [ "${1:-}" = "--binary" ]; then binary=$(realpath "$2"); fi

fail() { echo "systemd-e2e: FAIL: $*" >&2; exit 1; }
pass() { echo "systemd-e2e: ok: $*"; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (it boots a container)"
for tool in systemd-nspawn nsenter dpkg-deb dpkg-shlibdeps lintian openssl python3 debootstrap; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup.sh installs it)"
done

work=$(mktemp -d /var/tmp/tokend-e2e.XXXXXX)
nspawn=""
cleanup() {
    status=$?
    if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
        if [ "$status" -ne 0 ] && [ -n "${init:-}" ]; then
            echo "--- journal of tokend (last 60 lines) ---" >&2
            inside journalctl --no-pager -n 60 -u tokend.service -u tokend.socket -u fake-idp.service -u 'postgresql*' >&2 || true
        fi
        kill "$nspawn" 2>/dev/null || true
        wait "$nspawn" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

# --- The packages: the release binary, version N and a newer N+upgrade1.
[ -n "$binary" ] || binary=$(scripts/build-release.sh)
version=$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/TokendCore/TokendVersion.swift)
deb1=$(scripts/build-deb.sh --binary "$binary" "$work/first")
deb2=$(scripts/build-deb.sh --binary "$binary" --version "$version+upgrade1" "$work/second")
lintian --fail-on error,warning --tag-display-limit 0 "$deb1" >"$work/lintian.txt" 2>&1 \
    || { cat "$work/lintian.txt" >&2; fail "lintian: tags not explained in packaging/deb/lintian-overrides"; }
pass "lintian: no unexplained tag ($(grep -c . "$work/lintian.txt" || true) lines of output)"

# --- The container's file system: a copy of the cached Debian 12 root.
base=$(scripts/debian-root.sh systemd,systemd-sysv,dbus,python3,ca-certificates,libsqlite3-0,socat,procps,openssl,postgresql-15)
root=$work/root
cp -a "$base" "$root"
rm -f "$root/.complete"
echo tokend-e2e >"$root/etc/hostname"
# The docs' example provider host is this container's fake provider.
echo "127.0.0.1 login.example.com" >>"$root/etc/hosts"
for user in billing reporting guest; do chroot "$root" useradd -m -s /bin/bash "$user"; done
mkdir -p "$root/root/first" "$root/root/second" "$root/root/idp" "$root/root/steps"
cp "$deb1" "$root/root/first/"
cp "$deb2" "$root/root/second/"
scripts/make-test-ca.sh "$root/root/idp" login.example.com
cp "$root/root/idp/ca.pem" "$root/root/first/corp-ca.pem"
cp scripts/fake-oauth2-https.py "$root/root/idp/"
head -c 24 /dev/urandom | base64 | tr '+/' '-_' >"$root/root/idp/client.secret"
echo "rt-first-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')" >"$root/root/idp/refresh-tokens"
# Access tokens live 20 s, so the agent refreshes (and rotates the refresh
# token) every ~13 s all through the test, across reload, watchdog and upgrade.
cat >"$root/etc/systemd/system/fake-idp.service" <<'EOF'
[Unit]
Description=fake OAuth2 provider over HTTPS (test)
[Service]
ExecStart=/usr/bin/python3 /root/idp/fake-oauth2-https.py --port 443 --cert /root/idp/server.pem --key /root/idp/server.key --client-secret-file /root/idp/client.secret --refresh-tokens-file /root/idp/refresh-tokens --issued-file /root/idp/issued --rejected-file /root/idp/rejected --expires-in 20
[Install]
WantedBy=multi-user.target
EOF
ln -s /etc/systemd/system/fake-idp.service "$root/etc/systemd/system/multi-user.target.wants/fake-idp.service"

# --- The steps of docs/install.md: every ```sh block, each with its marker;
# those of docs/fleet.md: its marked blocks (other sections show commands
# that are not steps).
python3 - docs/install.md docs/fleet.md "$work/steps" <<'EOF'
import os, re, sys
os.makedirs(sys.argv[3])
names = []
for doc in sys.argv[1:3]:
  text = open(doc).read()
  for marker, code in re.findall(r"(<!-- step: [a-z0-9-]+ -->\n)?```sh\n(.*?)```", text, re.S):
    if not marker:
        if doc.endswith("fleet.md"):
            continue
        sys.exit("docs/install.md: a sh block has no <!-- step: NAME --> marker: " + code.splitlines()[0])
    name = marker.split()[2]
    if name in names:
        sys.exit(doc + ": step " + name + " appears twice")
    names.append(name)
    with open(os.path.join(sys.argv[3], name + ".sh"), "w") as f:
        f.write(code)
with open(os.path.join(sys.argv[3], "ALL"), "w") as f:
    f.write("\n".join(names) + "\n")
EOF
cp "$work/steps/"*.sh "$root/root/steps/"

# --- Boot.
systemd-nspawn -D "$root" --boot --register=no --keep-unit --private-network >"$work/console.log" 2>&1 &
nspawn=$!
init=""
# The container's init is the child of systemd-nspawn that runs systemd
# (nspawn forks a short-lived helper first).
for _ in $(seq 600); do
    init=""
    for child in $(cat "/proc/$nspawn/task/$nspawn/children" 2>/dev/null); do
        [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && init=$child
    done
    [ -n "$init" ] && break
    kill -0 "$nspawn" 2>/dev/null || { cat "$work/console.log" >&2; fail "systemd-nspawn exited"; }
    sleep 0.1
done
[ -n "$init" ] || fail "the container's init did not appear"
inside() {
    nsenter -t "$init" -m -u -i -n -p -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
}
for _ in $(seq 300); do
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    case "$state" in running | degraded) break ;; esac
    sleep 0.2
done
[ "$state" = running ] || { inside systemctl --failed --no-pager >&2 || true; fail "system state: $state"; }
pass "container booted, systemd $(inside systemctl --version | awk 'NR == 1 { print $2 }') running"
for _ in $(seq 100); do
    inside python3 -c 'import socket; socket.create_connection(("127.0.0.1", 443), 1)' 2>/dev/null && break
    sleep 0.2
done

# step NAME [DIR] [STDIN]: runs one block of docs/install.md as root.
step() {
    local name=$1 dir=${2:-/root} input=${3:-/dev/null}
    local doc=docs/install.md
    [[ "$name" == fleet-* ]] && doc=docs/fleet.md
    [ -f "$work/steps/$name.sh" ] || fail "$doc has no step $name"
    inside bash -euo pipefail -c "cd $dir && . /root/steps/$name.sh" <"$input" >"$work/step-$name.out" 2>&1 \
        || { cat "$work/step-$name.out" >&2; fail "$doc step $name failed"; }
    echo "$name" >>"$work/ran"
    pass "$doc step $name"
}
show() { inside systemctl show -p "$2" --value "$1"; }
# eventually SECONDS COMMAND...: polls until COMMAND succeeds (an event, not a timing).
eventually() {
    local limit=$(($1 * 10))
    shift
    for _ in $(seq "$limit"); do "$@" && return 0; sleep 0.1; done
    "$@"
}
status_is() { [ "$(show tokend.service StatusText)" = "$1" ]; }
mode() { inside stat -c '%a %U %G' "$1"; }
secret_known() { grep -qxF -- "$1" "$root/root/idp/issued"; }

# --- Install: users, directories, the socket enabled and listening.
step install /root/first
[ "$(inside dpkg-query -W -f '${Version}' tokend)" = "$version" ] || fail "installed version"
[ "$(inside systemctl is-enabled tokend.socket)" = enabled ] || fail "tokend.socket not enabled"
[ "$(show tokend.socket ActiveState)" = active ] || fail "tokend.socket not listening"
inside getent passwd tokend >/dev/null && inside getent group tokend-clients >/dev/null || fail "sysusers"
[ "$(mode /etc/tokend)" = "750 root tokend" ] || fail "/etc/tokend is $(mode /etc/tokend)"
[ "$(mode /etc/tokend/tokend.toml)" = "644 root root" ] || fail "the conffile is $(mode /etc/tokend/tokend.toml)"
pass "installed: user tokend, group tokend-clients, /etc/tokend 0750 root:tokend, tokend.socket enabled"
inside usermod -aG tokend-clients reporting

step vault-key
step client-secret /root "$root/root/idp/client.secret"
step ca-file /root/first
step config
step vault-init
step clients
[ "$(show tokend.service ActiveState)" = inactive ] || fail "the agent started before any connection"

# --- Socket activation; modes that let tokend-clients in.
step use
[ "$(show tokend.service ActiveState)" = active ] || fail "the first connection did not start the agent"
token=$(awk '/^Authorization: Bearer / { print $3 }' "$work/step-use.out")
secret_known "$token" || fail "billing did not get a token the provider issued"
pass "socket activation: the first connection started the agent; billing got its token over HTTPS (private CA)"
# STATUS= is sent every 5 s.
eventually 15 status_is "1 identity: 1 fresh" || fail "status: $(show tokend.service StatusText)"
[ "$(mode /run/tokend)" = "755 tokend tokend" ] || fail "/run/tokend is $(mode /run/tokend)"
[ "$(mode /run/tokend/tokend.sock)" = "660 tokend tokend-clients" ] || fail "socket is $(mode /run/tokend/tokend.sock)"
pass "while the agent runs: /run/tokend 0755 tokend:tokend, socket 0660 tokend:tokend-clients, status \"1 identity: 1 fresh\""

# --- A member no rule allows; a non-member.
set +e
inside runuser -u reporting -- tokend get billing-worker >"$work/reporting.out" 2>&1
status=$?
raw=$(echo "GET billing-worker" | inside runuser -u reporting -- socat - UNIX-CONNECT:/run/tokend/tokend.sock)
inside runuser -u guest -- tokend get billing-worker >"$work/guest.out" 2>&1
guest_status=$?
set -e
[ "$status" -eq 11 ] && grep -q forbidden "$work/reporting.out" || fail "reporting: exit $status, $(cat "$work/reporting.out")"
[[ "$raw" == "ERR forbidden"* ]] || fail "reporting over the raw protocol: $raw"
pass "a member of tokend-clients that no rule allows gets ERR forbidden (CLI exit 11)"
expected=$(python3 - docs/install.md <<'EOF'
import re, sys
print(re.search(r"told so:\n\n```\n(.*?)\n```", open(sys.argv[1]).read(), re.S).group(1))
EOF
)
[ "$guest_status" -eq 14 ] || fail "guest: exit $guest_status: $(cat "$work/guest.out")"
[ "$(cat "$work/guest.out")" = "$expected" ] || fail "guest was told: $(cat "$work/guest.out") (docs/install.md shows: $expected)"
pass "a non-member cannot connect and is told which group to join (as docs/install.md shows)"

# --- The vault key is only a sealed credential.
inside test ! -e /etc/tokend/vault.key || fail "a plaintext key file exists"
[ "$(inside systemd-creds decrypt --name=vault-key /etc/tokend/vault-key.cred - | wc -c)" -eq 32 ] || fail "credential"
[ "$(inside stat -c %s /etc/tokend/vault-key.cred)" -gt 32 ] || fail "the credential is not sealed"
pass "the vault key is an encrypted credential (systemd-creds) and the agent opened the vault with it"

# --- Reload: an identity with a rotating refresh token, and a wider rule.
inside install -m 0600 -o tokend -g tokend /root/idp/refresh-tokens /etc/tokend/nightly.rt
cat >>"$root/etc/tokend/tokend.toml" <<'EOF'

[identities.nightly-report]
provider = "corp"
refresh_token_file = "/etc/tokend/nightly.rt"
allow = ["user:billing"]
EOF
sed -i 's/^allow = \["user:billing"\]$/allow = ["user:billing", "user:reporting"]/' "$root/etc/tokend/tokend.toml"
pid=$(show tokend.service MainPID)
step reload
secret_known "$(inside runuser -u reporting -- tokend get billing-worker)" || fail "reload: reporting still refused"
secret_known "$(inside runuser -u billing -- tokend get nightly-report)" || fail "reload: no nightly-report token"
[ "$(show tokend.service MainPID)" = "$pid" ] || fail "reload restarted the agent"
eventually 15 status_is "2 identities: 2 fresh" || fail "status after reload: $(show tokend.service StatusText)"
pass "systemctl reload applied the edited configuration (new identity, wider rule) without a restart"

# --- Watchdog: a stopped agent is killed and restarted.
inside kill -STOP "$pid"
for _ in $(seq 600); do
    now=$(show tokend.service MainPID)
    [ "$now" != "$pid" ] && [ "$now" != 0 ] && [ "$(show tokend.service ActiveState)" = active ] && break
    sleep 0.1
done
[ "$now" != "$pid" ] && [ "$now" != 0 ] || fail "the watchdog did not restart the hung agent"
secret_known "$(inside runuser -u billing -- tokend get billing-worker)" || fail "no token after the watchdog restart"
inside journalctl --no-pager -u tokend.service | grep -q "Watchdog timeout" || fail "no watchdog timeout in the journal"
pass "SIGSTOP'd agent: watchdog timeout, restarted, tokens served again"

# --- Upgrade while a client asks for a token in a loop.
pid=$(show tokend.service MainPID)
inside bash -c 'failed=0; for i in $(seq 150); do runuser -u billing -- tokend get billing-worker >/dev/null 2>>/root/loop.err || failed=$((failed + 1)); sleep 0.05; done; echo $failed >/root/loop.failed' &
loop=$!
step upgrade /root/second
wait "$loop"
[ "$(inside dpkg-query -W -f '${Version}' tokend)" = "$version+upgrade1" ] || fail "upgrade: version"
[ "$(cat "$root/root/loop.failed")" = 0 ] || fail "upgrade: $(cat "$root/root/loop.failed") client requests failed: $(head -3 "$root/root/loop.err")"
[ "$(show tokend.service MainPID)" != "$pid" ] || fail "upgrade: the agent was not restarted"
grep -q '^\[identities.nightly-report\]' "$root/etc/tokend/tokend.toml" || fail "upgrade: the edited conffile was replaced"
# A forced refresh with the refresh token the vault holds now.
secret_known "$(inside runuser -u billing -- tokend get nightly-report --min-ttl 100)" || fail "upgrade: nightly-report"
[ ! -e "$root/root/idp/rejected" ] || fail "a refresh token was lost: the provider answered invalid_grant"
pass "upgrade: agent restarted, conffile kept, 150 client requests across it all answered, no refresh token lost"

# --- Stop.
inside systemctl stop tokend.service || fail "systemctl stop exited $?"
[ "$(show tokend.service Result)" = success ] && [ "$(show tokend.service ExecMainStatus)" = 0 ] \
    || fail "stop: result $(show tokend.service Result), status $(show tokend.service ExecMainStatus)"
secret_known "$(inside runuser -u billing -- tokend get nightly-report --min-ttl 100)" || fail "after stop"
[ ! -e "$root/root/idp/rejected" ] || fail "a refresh token was lost across stop"
pass "systemctl stop: exit 0, result success; started again by the socket, nothing lost"

# --- The fleet store on this host's PostgreSQL (docs/fleet.md, "Running it
# under systemd"): the vault moves into it, the agent serves and refreshes
# through it, and rides out a PostgreSQL restart.
before=$(inside systemd-analyze security tokend.service | sed -n 's/.*Overall exposure level for tokend.service: \([0-9.]*\).*/\1/p')
eventually 60 inside runuser -u postgres -- pg_isready -q || fail "PostgreSQL did not start in the container"
pass "PostgreSQL $(inside runuser -u postgres -- psql -qAtc 'SHOW server_version' </dev/null) running in the container"
step fleet-database /
(umask 077 && inside systemd-creds decrypt --name=db-password /etc/tokend/db-password.cred - >"$work/db.password")
[ "$(wc -c <"$work/db.password")" -ge 24 ] || fail "the database password credential"
step fleet-dropin
show tokend.service DropInPaths | grep -qF /etc/systemd/system/tokend.service.d/fleet.conf \
    || fail "the drop-in is not in effect: $(show tokend.service DropInPaths)"
show tokend.service After | grep -qw postgresql.service || fail "tokend.service is not ordered after postgresql.service"
step fleet-migrate
grep -q "moved 2 identities" "$work/step-fleet-migrate.out" || fail "migrate: $(cat "$work/step-fleet-migrate.out")"
[ "$(show tokend.service ActiveState)" = active ] || fail "the agent did not start on the fleet store"
# The database as its operator sees it (psql as postgres).
psql_store() { inside runuser -u postgres -- psql -qAt -d tokend -c "$1" </dev/null; }
pass "fleet store: migrated 2 identities, agent started with the drop-in (password as encrypted credential)"
secret_known "$(inside runuser -u billing -- tokend get billing-worker)" || fail "fleet: no billing-worker token"
secret_known "$(inside runuser -u billing -- tokend get nightly-report --min-ttl 100)" || fail "fleet: forced refresh of nightly-report"
[ ! -e "$root/root/idp/rejected" ] || fail "fleet: a refresh token was lost (invalid_grant)"
eventually 15 status_is "2 identities: 2 fresh" || fail "fleet status: $(show tokend.service StatusText)"
listening() {
    [ "$(psql_store "SELECT count(*) FROM pg_stat_activity WHERE usename = 'tokend' AND query LIKE 'LISTEN%'")" -ge 1 ]
}
eventually 15 listening || fail "the agent does not listen on the store: $(psql_store "SELECT application_name, state, query FROM pg_stat_activity WHERE usename = 'tokend'")"
pass "fleet store: tokens served through the socket, a forced refresh committed through the store, the agent listening (pg_stat_activity)"

# A PostgreSQL restart while a client asks in a loop.
pid=$(show tokend.service MainPID)
lost_before=$(inside journalctl --no-pager -o cat -u tokend.service _PID="$pid" | grep -c "fleet listener connection lost; reconnecting" || true)
rm -f "$root/root/loop.failed" "$root/root/loop.err"
inside bash -c 'failed=0; for i in $(seq 80); do runuser -u billing -- tokend get billing-worker >/dev/null 2>>/root/loop.err || failed=$((failed + 1)); sleep 0.05; done; echo $failed >/root/loop.failed' &
loop=$!
inside systemctl restart postgresql.service || fail "systemctl restart postgresql exited $?"
wait "$loop"
[ "$(cat "$root/root/loop.failed")" = 0 ] || fail "PostgreSQL restart: $(cat "$root/root/loop.failed") client requests failed: $(head -3 "$root/root/loop.err")"
reconnected() {
    [ "$(inside journalctl --no-pager -o cat -u tokend.service _PID="$pid" | grep -c "fleet listener connection lost; reconnecting")" -gt "$lost_before" ]
}
eventually 30 reconnected || fail "the agent did not log its listener's reconnection"
eventually 30 listening || fail "the agent is not listening again after the PostgreSQL restart"
secret_known "$(inside runuser -u billing -- tokend get nightly-report --min-ttl 100)" || fail "forced refresh after the PostgreSQL restart"
[ "$(show tokend.service MainPID)" = "$pid" ] || fail "the agent restarted with PostgreSQL"
[ ! -e "$root/root/idp/rejected" ] || fail "a refresh token was lost across the PostgreSQL restart"
pass "systemctl restart postgresql: 80 client requests across it all answered, the agent (same pid) reconnected, a forced refresh after it committed"
after=$(inside systemd-analyze security tokend.service | sed -n 's/.*Overall exposure level for tokend.service: \([0-9.]*\).*/\1/p')
[ "$after" = "$before" ] || fail "the drop-in changed the unit's exposure: $before before, $after with it"
pass "systemd-analyze security tokend.service with the drop-in: $after (as without it)"
if inside sh -c 'cat /var/log/postgresql/*.log' | grep -F -f "$work/db.password" >/dev/null; then
    fail "the database password is in PostgreSQL's log"
fi

# --- The installed unit's exposure.
exposure=$(inside systemd-analyze security tokend.service | sed -n 's/.*Overall exposure level for tokend.service: \([0-9.]*\).*/\1/p')
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || fail "systemd-analyze security: $exposure"
pass "systemd-analyze security tokend.service: $exposure (at most 2.0)"

# --- The journal: no permission error, no secret.
inside journalctl --no-pager -o cat -u tokend.service -u tokend.socket >"$work/journal.txt"
if grep -inE "permission denied|errno=13|EACCES|operation not permitted|not permitted" "$work/journal.txt"; then
    fail "permission errors in the journal (above)"
fi
grep -q "tokend started" "$work/journal.txt" || fail "the agent's log is not in the journal"
inside journalctl --no-pager -o verbose >"$work/journal-all.txt"
cat "$root/root/idp/issued" "$root/root/idp/client.secret" "$root/root/idp/refresh-tokens" "$work/db.password" | grep -v "^$" >"$work/secrets"
if grep -F -f "$work/secrets" "$work/journal-all.txt" >/dev/null; then fail "a secret is in the journal"; fi
pass "journal: no permission error, none of $(wc -l <"$work/secrets") secrets (tokens issued, client secret, database password)"

# --- Remove keeps state; purge deletes it.
step remove
for file in /var/lib/tokend/vault.db /etc/tokend/vault-key.cred /etc/tokend/tokend.toml /etc/tokend/corp.secret; do
    inside test -e "$file" || fail "apt remove deleted $file"
done
step purge
for file in /var/lib/tokend /etc/tokend; do
    inside test ! -e "$file" || fail "apt purge left $file"
done
pass "apt remove kept the vault, key and configuration; apt purge deleted them"

# Every block of docs/install.md ran.
missing=$(sort "$work/steps/ALL" | comm -23 - <(sort "$work/ran"))
[ -z "$missing" ] || fail "steps of docs/install.md or docs/fleet.md never run: $missing"
pass "all $(wc -l <"$work/steps/ALL") steps of docs/install.md and docs/fleet.md ran"

inside systemctl poweroff || true
wait "$nspawn" || fail "the container did not shut down cleanly"
nspawn=""
echo "systemd-e2e: all passed"
