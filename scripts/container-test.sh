#!/usr/bin/env bash
# The sidecar deployment with real containers (podman + runc), as
# docs/container.md describes it: builds the image from Containerfile on a
# local Debian 12 base, runs the agent container and two worker containers
# that share only the socket volume, and checks what a pod relies on:
#
#   - the health command says "starting" (17) while the first token is not
#     there, and "ready" (0) only once it is served;
#   - `get --wait` waits for the first token; the worker whose uid the
#     identity allows gets it, another uid gets "forbidden", and a uid
#     outside the socket's numeric group (no /etc/group entry) cannot connect;
#   - a failing provider makes health "degraded" (18); recovery makes it ready;
#   - the root file system is read-only (no tmpfs either): state lives only
#     in the vault volume;
#   - logs are JSON lines on stderr, with no token or secret in them;
#   - as PID 1 the agent reaps orphans;
#   - after SIGKILL and a new container on the same volumes the vault
#     survives: the worker's next GET gets the same token without a new
#     request to the provider;
#   - SIGTERM stops it with exit 0 within the grace period (10 s).
#
# The provider is a fake OAuth2 token endpoint on the host's loopback
# (scripts/container/fake-oauth2.py, real HTTP); the agent container uses the
# host network to reach it, the workers have no network at all.
#
#   scripts/container-test.sh          (as root; installs podman and runc)
# TOKEND_RELEASE_BINARY=path skips the release build (a binary from
# scripts/build-release.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

scripts/check-manifests.sh

fail() { echo "container-test: FAIL: $*" >&2; exit 1; }
step() { echo "container-test: $*" >&2; }

[ "$(id -u)" -eq 0 ] || fail "must run as root (podman with runc, volumes owned by other uids)"
for tool in podman runc python3 curl; do
    command -v "$tool" >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc python3 curl >&2
        break
    }
done
for tool in podman runc python3 curl; do command -v "$tool" >/dev/null || fail "$tool is missing"; done

# podman 4.3 here: crun fails on this machine's cgroups, and the host's
# rlimits cannot be kept inside the container.
pod() { podman --runtime runc "$@"; }
limits=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

binary=${TOKEND_RELEASE_BINARY:-$(scripts/build-release.sh .build/dist)}
[ -x "$binary" ] || fail "no release binary at $binary"
root=$(scripts/debian-root.sh libsqlite3-0,ca-certificates)
base="localhost/tokend-test-base:$(basename "$root")"
if ! pod image exists "$base"; then
    step "importing the base image $base from $root"
    tar --exclude=./.complete -C "$root" -c . | pod import - "$base" >/dev/null
fi

run=$(mktemp -d /tmp/tokend-container-test.XXXXXX)
tag="localhost/tokend:container-test-$$"
names=(tokend-ct-agent-$$ tokend-ct-agent2-$$)
volumes=(tokend-ct-vault-$$ tokend-ct-sock-$$)
provider_pid=""
cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -n "${names[0]:-}" ]; then
        for name in "${names[@]}"; do pod logs "$name" 2>&1 | tail -20 | sed "s/^/$name: /" >&2 || true; done
        sed 's/^/provider: /' "$run/provider.log" 2>/dev/null | tail -20 >&2 || true
    fi
    for name in "${names[@]}"; do pod rm -f -t 0 "$name" >/dev/null 2>&1 || true; done
    for volume in "${volumes[@]}"; do pod volume rm -f "$volume" >/dev/null 2>&1 || true; done
    pod rmi -f "$tag" >/dev/null 2>&1 || true
    [ -n "$provider_pid" ] && kill "$provider_pid" 2>/dev/null || true
    rm -rf "$run"
    exit "$status"
}
trap cleanup EXIT

step "building $tag from Containerfile (base $base)"
mkdir "$run/context"
cp "$binary" "$run/context/tokend"
pod build -q "${limits[@]}" --build-arg BASE="$base" -f Containerfile -t "$tag" "$run/context" >/dev/null

# Secrets as a Secret volume would hold them: files of the agent's uid, 0400.
agent_uid=10001
socket_gid=4321
mkdir -m 0700 "$run/secrets" "$run/config"
head -c 32 /dev/urandom >"$run/secrets/vault.key"
client_secret="ct-client-secret-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$client_secret" >"$run/secrets/corp.secret"
cp "$run/secrets/corp.secret" "$run/provider.secret"
chown -R "$agent_uid:$agent_uid" "$run/secrets"
chmod 0400 "$run/secrets/"*
chmod 0500 "$run/secrets"

python3 scripts/container/fake-oauth2.py --client-secret-file "$run/provider.secret" --hold \
    >"$run/provider.port" 2>"$run/provider.log" &
provider_pid=$!
for _ in $(seq 100); do grep -q '^port=' "$run/provider.port" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^port=//p' "$run/provider.port")
[ -n "$port" ] || fail "the fake provider did not start"
provider="http://127.0.0.1:$port"

cat >"$run/config/tokend.toml" <<TOML
[vault]
path = "/var/lib/tokend/vault.db"
key_file = "/run/secrets/tokend/vault.key"

[socket]
path = "/run/tokend/tokend.sock"
mode = "0660"
group = "$socket_gid"

[providers.corp]
kind = "oauth2"
token_endpoint = "$provider/token"
client_id = "tokend-container-test"
client_secret_file = "/run/secrets/tokend/corp.secret"
allow_insecure_http = true
timeout = 120

[identities.billing]
provider = "corp"
grant = "client_credentials"
allow = ["uid:1001"]
TOML
# The same, with the secrets as credentials: names under $CREDENTIALS_DIRECTORY.
sed -e 's|^key_file = .*|key_credential = "vault.key"|' \
    -e 's|^client_secret_file = .*|client_secret_credential = "corp.secret"|' \
    "$run/config/tokend.toml" >"$run/config/credentials.toml"
grep -q '^key_credential' "$run/config/credentials.toml" || fail "credentials.toml was not derived"
chmod 0755 "$run/config"
chmod 0644 "$run/config/"*.toml

for volume in "${volumes[@]}"; do pod volume create "$volume" >/dev/null; done
vault_volume=${volumes[0]}
socket_volume=${volumes[1]}

start_agent() { # name, then podman options
    local name=$1
    shift
    pod run -d --name "$name" "$@" "${limits[@]}" --network host \
        --read-only --read-only-tmpfs=false --log-driver k8s-file \
        --group-add "$socket_gid" \
        -v "$vault_volume:/var/lib/tokend" -v "$socket_volume:/run/tokend" \
        -v "$run/secrets:/run/secrets/tokend:ro" -v "$run/config:/etc/tokend:ro" \
        "$tag" --create-vault --log-format json >/dev/null
}

# A worker: same image, its own uid, only the socket volume, no network.
worker() { # uid:gid, then tokend arguments
    local user=$1
    shift
    pod run --rm "${limits[@]}" --network none --read-only --read-only-tmpfs=false --user "$user" \
        -v "$socket_volume:/run/tokend" --entrypoint /usr/local/bin/tokend "$tag" "$@" --socket /run/tokend/tokend.sock
}

health() { # container; prints the exit code of `tokend health`
    local code=0
    pod exec "$1" tokend health --socket /run/tokend/tokend.sock >"$run/health.out" 2>&1 || code=$?
    echo "$code"
}

# Waits (up to 60 s) until `tokend health` in the container exits other
# than 14, i.e. the agent answers on its socket.
await_answering() {
    for _ in $(seq 600); do
        [ "$(health "$1")" != 14 ] && return 0
        sleep 0.1
    done
    fail "the agent in $1 never answered on its socket: $(cat "$run/health.out")"
}

step "starting the agent (read-only root, numeric socket group $socket_gid, provider held)"
agent=${names[0]}
start_agent "$agent"
await_answering "$agent"
code=$(health "$agent")
[ "$code" = 17 ] || fail "health while the first token is held: exit $code ($(cat "$run/health.out")), want 17 starting"
step "health says: $(cat "$run/health.out")"

stat=$(pod exec "$agent" stat -c '%g %a' /run/tokend/tokend.sock)
[ "$stat" = "$socket_gid 660" ] || fail "socket group and mode are '$stat', want '$socket_gid 660'"
if pod exec "$agent" getent group "$socket_gid" >/dev/null; then fail "group $socket_gid must have no name in the image"; fi
if pod exec "$agent" touch /tmp/probe 2>/dev/null; then fail "the root file system is writable"; fi

step "worker 1001 waits for the first token; then the provider answers"
worker "1001:$socket_gid" get billing --wait 60 >"$run/token1" 2>"$run/worker1.err" &
waiting=$!
curl -fsS -X POST "$provider/release" >/dev/null
wait "$waiting" || fail "worker 1001: $(cat "$run/worker1.err")"
grep -q '^fake-at-1-' "$run/token1" || fail "worker 1001 did not get the provider's first token"
code=$(health "$agent")
[ "$code" = 0 ] || fail "health once the token is served: exit $code ($(cat "$run/health.out")), want 0 ready"
step "health says: $(cat "$run/health.out")"

step "worker 1002 (same group, not allowed) is refused"
code=0
worker "1002:$socket_gid" get billing >/dev/null 2>"$run/worker2.err" || code=$?
[ "$code" = 11 ] && grep -q 'forbidden' "$run/worker2.err" || fail "worker 1002: exit $code, $(cat "$run/worker2.err")"

step "worker 1003 (not in group $socket_gid) cannot even connect"
code=0
worker "1003:1003" get billing >/dev/null 2>"$run/worker3.err" || code=$?
[ "$code" = 14 ] && grep -q 'Permission denied' "$run/worker3.err" || fail "worker 1003: exit $code, $(cat "$run/worker3.err")"

step "a failing provider makes the agent degraded, recovery makes it ready"
curl -fsS -X POST "$provider/fail" >/dev/null
pod exec "$agent" tokend refresh billing >/dev/null 2>&1 || true
code=$(health "$agent")
[ "$code" = 18 ] || fail "health with a failing provider: exit $code ($(cat "$run/health.out")), want 18 degraded"
step "health says: $(cat "$run/health.out")"
curl -fsS -X POST "$provider/recover" >/dev/null
pod exec "$agent" tokend refresh billing >/dev/null
code=$(health "$agent")
[ "$code" = 0 ] || fail "health after recovery: exit $code ($(cat "$run/health.out")), want 0"
worker "1001:$socket_gid" get billing >"$run/token2" || fail "worker 1001 after recovery"
issued=$(curl -fsS "$provider/count" | python3 -c 'import json, sys; print(json.load(sys.stdin)["issued"])')

step "as PID 1 the agent reaps an orphan left by an exec'd shell"
orphan=$(pod exec "$agent" sh -c 'sleep 0.2 & echo $!')
reaped=no
for _ in $(seq 300); do
    if ! pod exec "$agent" test -e "/proc/$orphan"; then reaped=yes; break; fi
    sleep 0.1
done
[ "$reaped" = yes ] || fail "orphan $orphan was not reaped: $(pod exec "$agent" cat /proc/$orphan/status | grep State)"

step "SIGKILL the agent; a new container on the same volumes serves the token from the vault"
step "(this one finds its config and secrets through TOKEND_CONFIG and CREDENTIALS_DIRECTORY)"
pod kill -s KILL "$agent" >/dev/null
pod wait "$agent" >/dev/null || true
agent=${names[1]}
start_agent "$agent" -e TOKEND_CONFIG=/etc/tokend/credentials.toml -e CREDENTIALS_DIRECTORY=/run/secrets/tokend
worker "1001:$socket_gid" get billing --wait 60 >"$run/token3" || fail "worker 1001 after the restart"
cmp -s "$run/token2" "$run/token3" || fail "after the restart the worker got another token: the vault did not survive"
now=$(curl -fsS "$provider/count" | python3 -c 'import json, sys; print(json.load(sys.stdin)["issued"])')
[ "$now" = "$issued" ] || fail "the restarted agent asked the provider again ($issued -> $now tokens)"
code=$(health "$agent")
[ "$code" = 0 ] || fail "health after the restart: exit $code ($(cat "$run/health.out"))"

step "SIGTERM: exit 0 within the grace period"
pod stop -t 10 "$agent" >/dev/null
status=$(pod inspect "$agent" --format '{{.State.ExitCode}}')
[ "$status" = 0 ] || fail "after SIGTERM the agent exited $status (137 = killed after the grace period)"

step "logs: JSON lines on stderr, no token or secret"
for name in "${names[@]}"; do
    log=$(pod inspect "$name" --format '{{.HostConfig.LogConfig.Path}}')
    python3 - "$log" "$client_secret" "$run/token1" "$run/token2" <<'PY' || fail "logs of $name"
import json, sys
log, secret, *token_files = sys.argv[1:]
secrets = [secret] + [open(path).read().strip() for path in token_files]
lines = open(log).read().splitlines()
assert lines, "no log lines"
for line in lines:
    # k8s-file format: time, stream, tag, message
    _, stream, _, message = line.split(" ", 3)
    assert stream == "stderr", f"a line on {stream}: {message[:80]}"
    json.loads(message)
    for value in secrets:
        assert value not in message, "a secret or token is in the log"
print(f"{len(lines)} JSON lines on stderr", file=sys.stderr)
PY
done

step "the examples' tokend.toml passes check-config in the image"
pod run --rm "${limits[@]}" --network none --read-only --read-only-tmpfs=false \
    -v "$repo/deploy/compose/tokend.toml:/etc/tokend/tokend.toml:ro" -v "$run/secrets:/run/secrets/tokend:ro" \
    --entrypoint /usr/local/bin/tokend "$tag" check-config >"$run/check.out" 2>&1 ||
    fail "check-config of deploy/compose/tokend.toml: $(cat "$run/check.out")"

echo "container-test: all checks passed"
