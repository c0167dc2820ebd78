#!/usr/bin/env bash
# Measures the deployable binary for docs/install.md: its size, and its
# start-up time (median of 11 runs each) for
#   - `tokend --version`: loading, the Swift runtime's start, exit;
#   - `tokend serve` with an empty vault: from exec until the socket answers
#     PING (configuration read, vault opened, socket bound, scheduler started).
# Prints a Markdown table. Not a test: numbers vary with the machine.
#
#   scripts/measure-binary.sh [PATH]     (default: scripts/build-release.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-$(scripts/build-release.sh)}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[vault]\npath = "%s/vault.db"\nkey_file = "%s/vault.key"\n[socket]\npath = "%s/tokend.sock"\n' \
    "$work" "$work" "$work" >"$work/tokend.toml"
"$binary" vault init --config "$work/tokend.toml" >/dev/null
python3 - "$binary" "$work" <<'EOF'
import os, socket, statistics, subprocess, sys, time
binary, work = sys.argv[1], sys.argv[2]

def version():
    start = time.perf_counter()
    subprocess.run([binary, "--version"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start

def serve():
    path = work + "/tokend.sock"
    start = time.perf_counter()
    agent = subprocess.Popen([binary, "serve", "--config", work + "/tokend.toml"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(path)
                    s.sendall(b"PING\n")
                    if s.recv(64).startswith(b"OK PONG"):
                        return time.perf_counter() - start
            except OSError:
                if agent.poll() is not None:
                    sys.exit("tokend serve exited early")
                time.sleep(0.001)
    finally:
        agent.terminate()
        agent.wait()

size = os.path.getsize(binary)
v = statistics.median(version() for _ in range(11))
s = statistics.median(serve() for _ in range(11))
print("| measurement | result |")
print("|---|---|")
print(f"| size of the stripped binary | {size / 1048576:.1f} MiB ({size} bytes) |")
print(f"| `tokend --version` (start and exit), median of 11 | {v * 1000:.0f} ms |")
print(f"| `tokend serve`, empty vault, exec until the socket answers PING, median of 11 | {s * 1000:.0f} ms |")
EOF
