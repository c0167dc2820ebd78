#!/usr/bin/env bash
# Installs what building, running and testing tokend need on a fresh Debian
# machine (as root; apt-get). Idempotent:
# it skips what is already there, so a second run costs a few seconds.
set -euo pipefail

need=()
# libsqlite3-dev: the vault; python3-venv: the test OAuth2 server's venv;
# socat: the interoperability tests drive the socket with it, as the README does;
# strace: a test watches the order of fsync calls of the real binary;
# git, openssl: the credential-helper tests run real git and make TLS
# certificates (a fake Kubernetes API server, a private-CA provider);
# dpkg-dev (dpkg-shlibdeps), lintian, debootstrap and systemd-container: the
# Debian package and its end-to-end test under a real systemd (a Debian 12
# root booted with systemd-nspawn).
# gcc: the socket benchmark's C load client and baseline server.
# postgresql-15: the fleet store's tests run their own cluster (scripts/postgres/start.sh).
for package in libsqlite3-dev sqlite3 python3-venv socat strace git openssl dpkg-dev lintian debootstrap systemd-container gcc postgresql-15; do
    dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
# kubectl: the exec-plugin test runs it. Debian's kubernetes-client (1.20)
# is the fallback; it predates client.authentication.k8s.io/v1, so the v1
# test fails with it (loudly) and needs a newer kubectl.
command -v kubectl >/dev/null 2>&1 || need+=(kubernetes-client)
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
