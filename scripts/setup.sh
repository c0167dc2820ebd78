#!/usr/bin/env bash
# Installs what building, running and testing tokend need on a fresh Debian
# machine (as root; apt-get). Idempotent:
# it skips what is already there, so a second run costs a few seconds.
set -euo pipefail

need=()
# libsqlite3-dev: the vault; python3-venv: the test OAuth2 server's venv;
# socat: the interoperability tests drive the socket with it, as the README does.
# The Debian package and its end-to-end test under a real systemd: dpkg-dev
# (dpkg-shlibdeps), lintian, debootstrap and systemd-container (a Debian 12
# root booted with systemd-nspawn), openssl (the test's certificates).
for package in libsqlite3-dev sqlite3 python3-venv socat dpkg-dev lintian debootstrap systemd-container openssl; do
    dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
