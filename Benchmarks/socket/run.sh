#!/usr/bin/env bash
# Socket server benchmark: tokend serving a 900-byte token against a
# minimal C epoll server answering the same line (this machine's limit),
# at 1, 16 and 64 connections, in the same run. Prints a Markdown table.
#
#   Benchmarks/socket/run.sh [seconds per run, default 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-5}
work=$(mktemp -d /tmp/tokend-sockbench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cc -O2 -pthread -o "$work/loadgen" Benchmarks/socket/loadgen.c
cc -O2 -o "$work/lineserver" Benchmarks/socket/lineserver.c
swift build -c release --product tokend >/dev/null 2>&1
tokend="$(swift build -c release --show-bin-path)/tokend"

printf 'unused' >"$work/secret" && chmod 600 "$work/secret"
cat >"$work/tokend.toml" <<TOML
[vault]
path = "$work/vault.db"
key_file = "$work/vault.key"
[socket]
path = "$work/tokend.sock"
[providers.none]
kind = "oauth2"
token_endpoint = "http://127.0.0.1:9/token"
client_id = "bench"
client_secret_file = "$work/secret"
allow_insecure_http = true
TOML
"$tokend" vault init --config "$work/tokend.toml" >/dev/null
token=$(head -c 675 /dev/urandom | base64 -w0 | head -c 900)
# Valid for a day: no refresh (and no provider call) during the run.
printf '{"name":"bench","provider":"none","refresh_token":"r","access_token":"%s","expires_in":86400}\n' "$token" \
    | "$tokend" vault import --config "$work/tokend.toml" >/dev/null
"$tokend" serve --config "$work/tokend.toml" --log-level warning 2>"$work/agent.log" &
"$work/lineserver" "$work/c.sock" 900 &
for _ in $(seq 1 100); do [ -S "$work/tokend.sock" ] && [ -S "$work/c.sock" ] && break; sleep 0.1; done

echo "| connections | tokend req/s | tokend p50/p99/p999 µs | C epoll req/s | C epoll p50/p99/p999 µs | tokend / C |"
echo "|---|---|---|---|---|---|"
for connections in 1 16 64; do
    t=$("$work/loadgen" "$work/tokend.sock" "$connections" "$seconds" "GET bench")
    c=$("$work/loadgen" "$work/c.sock" "$connections" "$seconds" "GET bench")
    field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
    ratio=$(awk "BEGIN { printf \"%.0f%%\", 100 * $(field "$t" rps) / $(field "$c" rps) }")
    echo "| $connections | $(field "$t" rps) | $(field "$t" p50_us)/$(field "$t" p99_us)/$(field "$t" p999_us)" \
        "| $(field "$c" rps) | $(field "$c" p50_us)/$(field "$c" p99_us)/$(field "$c" p999_us) | $ratio |"
done
