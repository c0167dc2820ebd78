#!/usr/bin/env bash
# Socket server benchmark: tokend against a minimal single-threaded C epoll
# server (lineserver.c) sending the very reply line tokend sends for
# `GET bench` (a 900-byte token), driven by one closed-loop epoll client
# (loadclient.c) that is not the limit. Each round measures both servers back
# to back at 1, 16 and 64 persistent connections and with 16
# connect-per-request cycles in flight. Prints a Markdown table of the ratios
# tokend / C (median and spread over the rounds) and keeps every raw client
# line in Benchmarks/results/socket-<UTC time>.txt with the machine.
#
#   Benchmarks/socket/run.sh [--rounds N] [--seconds S] [--threads T] [--tokend BIN]
#   Benchmarks/socket/run.sh --smoke [--tokend BIN]
#
# --smoke (CI): checks the harness itself (selftest.py against hostile peers),
# then 1 s of each mode against the C server and tokend, checking only that
# both answered every request correctly; no figure is asserted or kept.
# Without --tokend, the release tokend is built (swift build -c release).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3 seconds=5 warmup=1 threads=1 smoke=0 tokend=""
while [ "$#" -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --tokend) tokend=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--threads T] [--tokend BIN] [--smoke]" >&2; exit 2 ;;
    esac
done
for value in "$rounds" "$seconds" "$threads"; do
    [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds, --seconds and --threads take a whole number >= 1" >&2; exit 2; }
done
cc=${CC:-cc}
command -v "$cc" >/dev/null || { echo "run.sh: no C compiler ($cc); install gcc or set CC" >&2; exit 1; }
command -v python3 >/dev/null || { echo "run.sh: python3 is needed" >&2; exit 1; }

umask 077  # the reply file holds the benchmark token
work=$(mktemp -d /tmp/tokend-sockbench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$cc" -O2 -Wall -Werror -pthread -o "$work/loadclient" Benchmarks/socket/loadclient.c
"$cc" -O2 -Wall -Werror -o "$work/lineserver" Benchmarks/socket/lineserver.c
if [ -z "$tokend" ]; then
    swift build -c release --product tokend >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
    tokend="$(swift build -c release --show-bin-path)/tokend"
fi
[ -x "$tokend" ] || { echo "run.sh: $tokend is not an executable tokend" >&2; exit 1; }

if [ "$smoke" -eq 1 ]; then
    python3 Benchmarks/socket/selftest.py --loadclient "$work/loadclient" --lineserver "$work/lineserver"
fi

printf 'unused' >"$work/secret"
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
# Valid for a day: no refresh (and no provider call) during the run, and
# expires_in keeps five digits, so every reply has the same length.
printf '{"name":"bench","provider":"none","refresh_token":"r","access_token":"%s","expires_in":86400}\n' "$token" \
    | "$tokend" vault import --config "$work/tokend.toml" >/dev/null
unset token
"$tokend" serve --config "$work/tokend.toml" --log-level warning 2>"$work/agent.log" &
pids+=($!)
tokend_pid=$!

# The agent is up when it answers; its reply is what the C server will send.
for attempt in $(seq 1 300); do
    if "$work/loadclient" --socket "$work/tokend.sock" --request "GET bench" --mode once >"$work/reply" 2>"$work/once.err"; then
        break
    fi
    kill -0 "$tokend_pid" 2>/dev/null || { echo "run.sh: tokend exited:" >&2; cat "$work/agent.log" >&2; exit 1; }
    [ "$attempt" -lt 300 ] || { echo "run.sh: tokend did not answer in 30 s: $(cat "$work/once.err")" >&2; exit 1; }
    sleep 0.1
done
reply_bytes=$(wc -c <"$work/reply")
"$work/lineserver" "$work/c.sock" "$work/reply" &
pids+=($!)
c_pid=$!
for attempt in $(seq 1 100); do
    "$work/loadclient" --socket "$work/c.sock" --request "GET bench" --mode once >"$work/c-reply" 2>/dev/null && break
    [ "$attempt" -lt 100 ] || { echo "run.sh: lineserver did not answer" >&2; exit 1; }
    sleep 0.1
done
cmp -s "$work/reply" "$work/c-reply" || { echo "run.sh: the C server's reply differs from tokend's" >&2; exit 1; }

clock_ticks=$(getconf CLK_TCK)
cpu_ticks() {  # utime + stime of a process (fields 14 and 15 of /proc/PID/stat)
    sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# One client run; its line (or its error) goes to stdout, prefixed, with the
# server's CPU time over the run (warmup included, as the client's).
measure() {  # round server mode connections seconds warmup
    local socket=$work/tokend.sock pid=$tokend_pid
    [ "$2" = c ] && socket=$work/c.sock pid=$c_pid
    local line before load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    before=$(cpu_ticks "$pid")
    if ! line=$("$work/loadclient" --socket "$socket" --request "GET bench" --reply-bytes "$reply_bytes" \
        --mode "$3" --connections "$4" --threads "$threads" --seconds "$5" --warmup "$6" --label "$2" 2>&1); then
        echo "run.sh: round $1, $2, $3 x$4 failed: $line" >&2
        kill -0 "$tokend_pid" 2>/dev/null || { echo "run.sh: tokend is gone; its log:" >&2; cat "$work/agent.log" >&2; }
        return 1
    fi
    echo "round=$1 server=$2 load1=$load1 $line server_cpu_s=$(awk "BEGIN { printf \"%.2f\", ($(cpu_ticks "$pid") - $before) / $clock_ticks }")"
}

if [ "$smoke" -eq 1 ]; then
    for server in c tokend; do
        measure 0 "$server" persistent 16 1 0 >/dev/null
        measure 0 "$server" connect 4 1 0 >/dev/null
    done
    echo "smoke: loadclient, lineserver and tokend ($reply_bytes-byte replies) answered every request correctly"
    exit 0
fi

mkdir -p Benchmarks/results
raw="Benchmarks/results/socket-$(date -u +%Y%m%dT%H%M%SZ).txt"
# The server's code is what Sources/ and Package.swift held when the binary
# was built: name the checkout the binary was built in (its HEAD and the
# last commit that changed them), not necessarily this one.
if source=$(git -C "$(dirname "$tokend")" rev-parse --show-toplevel 2>/dev/null); then
    commit="checkout $source at $(git -C "$source" rev-parse --short HEAD), Sources last changed in $(git -C "$source" log -1 --format=%h -- Sources Package.swift)"
    git -C "$source" diff --quiet HEAD -- Sources Package.swift || commit="$commit, with uncommitted changes to Sources"
else
    commit="unknown (the binary is outside a git checkout)"
fi
{
    echo "# Benchmarks/socket/run.sh --rounds $rounds --seconds $seconds --threads $threads"
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "# uname: $(uname -a)"
    echo "# nproc: $(nproc)"
    echo "# cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sort | uniq -c | sed 's/^ *//')"
    echo "# tokend commit: $commit ($("$tokend" --version 2>/dev/null || echo unknown version))"
    echo "# tokend binary: $tokend"
    echo "# reply: $reply_bytes bytes (tokend's reply to GET bench, also sent by lineserver)"
    echo "# client: loadclient, $threads thread(s), warmup ${warmup} s, ${seconds} s measured per run"
} >"$raw"
cat "$raw" >&2

for round in $(seq 1 "$rounds"); do
    echo "# round $round start: load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$raw"
    # Alternate who goes first, so a drift in the machine's load within a
    # round does not always favour the same server.
    order="tokend c"
    [ $((round % 2)) -eq 0 ] && order="c tokend"
    for run in "persistent 1" "persistent 16" "persistent 64" "connect 16"; do
        for server in $order; do
            # shellcheck disable=SC2086
            line=$(measure "$round" "$server" $run "$seconds" "$warmup")
            echo "$line" >>"$raw"
            echo "$line" >&2
        done
    done
done
echo "# end: load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$raw"
kill -0 "$tokend_pid" 2>/dev/null || { echo "run.sh: tokend died during the run" >&2; exit 1; }

python3 Benchmarks/socket/table.py "$raw" >"$work/table.md"
{ echo; echo "# table (Benchmarks/socket/table.py $raw):"; sed 's/^/# /' "$work/table.md"; } >>"$raw"
cat "$work/table.md"
echo
echo "raw runs: $raw"
