#!/usr/bin/env bash
# Start, memory and idle CPU of `tokend serve` (issue #15): builds the release
# tokend (unless --tokend BIN is given) and runs Benchmarks/agent/run.py,
# which prints a Markdown table and keeps the raw runs in
# Benchmarks/results/agent-<UTC time>.txt. Other arguments go to run.py
# (--rounds, --identities, --idle-seconds, --connections, --watchers).
#
#   Benchmarks/agent/run.sh [--tokend BIN] [run.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v python3 >/dev/null || { echo "agent bench: python3 is needed" >&2; exit 1; }
tokend=""
arguments=()
while [ "$#" -gt 0 ]; do
    case "$1" in
    --tokend) tokend=$2; shift 2 ;;
    *) arguments+=("$1"); shift ;;
    esac
done
if [ -z "$tokend" ]; then
    log=$(mktemp /tmp/tokend-agentbench-build.XXXXXX)
    swift build -c release --product tokend >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
    rm -f "$log"
    tokend="$(swift build -c release --show-bin-path)/tokend"
fi
exec python3 Benchmarks/agent/run.py --tokend "$tokend" "${arguments[@]}"
