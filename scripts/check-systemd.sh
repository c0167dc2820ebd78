#!/usr/bin/env bash
# Checks the unit files in systemd/: `systemd-analyze verify` must pass, and
# `systemd-analyze security` must rate tokend.service's exposure at 2.0 or
# less. ExecStart points at the freshly built binary, since verify checks
# that the executable exists.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-$(swift build --show-bin-path)/tokend}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s|/usr/bin/tokend|$binary|" systemd/tokend.service >"$work/tokend.service"
cp systemd/tokend.socket "$work/tokend.socket"
(cd "$work" && systemd-analyze verify --man=no ./tokend.service ./tokend.socket)
exposure=$(cd "$work" && systemd-analyze security --offline=true ./tokend.service | sed -n 's/.*Overall exposure level for tokend.service: \([0-9.]*\).*/\1/p')
echo "systemd: verify passed; exposure of tokend.service: $exposure (limit 2.0)"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }'
