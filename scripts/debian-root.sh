#!/usr/bin/env bash
# A Debian 12 root file system made with debootstrap (minbase), for the tests
# that boot a real systemd (systemd-nspawn) or build a container image
# (podman import). Cached by package list under $TOKEND_ROOT_CACHE
# (default /var/cache/tokend-test/roots), so only the first run pays the
# ~65 s; callers copy it before changing it. Prints the cached root's path.
#
#   scripts/debian-root.sh PACKAGE[,PACKAGE...]
# The mirror is the one this machine's apt already uses (no host name here).
set -euo pipefail
include=${1:?usage: debian-root.sh PACKAGE[,PACKAGE...]}
cache=${TOKEND_ROOT_CACHE:-/var/cache/tokend-test/roots}
command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
}
key=$(printf '%s' "$include" | tr ',' '\n' | sort -u | tr '\n' ',' | sha256sum | cut -c1-16)
root="$cache/bookworm-$key"
if [ ! -e "$root/.complete" ]; then
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
    rm -rf "$root.tmp"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include="$include" bookworm "$root.tmp" "$mirror" >&2
    rm -rf "$root"
    mv "$root.tmp" "$root"
    touch "$root/.complete"
fi
echo "$root"
