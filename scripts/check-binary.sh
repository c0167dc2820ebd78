#!/usr/bin/env bash
# Checks that the deployable binary needs only what Debian 12 ships: `ldd`
# may list the C library and its parts, the C++ runtime, libgcc_s,
# libsqlite3 and zlib, nothing else (no Swift runtime from a toolchain
# folder, nothing "not found"); and that it is stripped and runs.
#
#   scripts/check-binary.sh PATH     (a binary from scripts/build-release.sh)
set -euo pipefail
binary=${1:?usage: check-binary.sh PATH}
allowed='^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|/lib/ld-linux-aarch64\.so\.1|libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|libutil\.so\.1|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libsqlite3\.so\.0|libz\.so\.1)$'
libraries=$(ldd "$binary" | awk '{ print $1 }')
bad=$(echo "$libraries" | grep -Ev "$allowed" || true)
if [ -n "$bad" ] || ldd "$binary" | grep -q "not found"; then
    ldd "$binary" >&2
    echo "check-binary: $binary needs libraries Debian 12 does not ship as such: $bad" >&2
    exit 1
fi
if readelf -S --wide "$binary" | grep -q ' \.symtab '; then
    echo "check-binary: $binary is not stripped" >&2
    exit 1
fi
"$binary" --version >/dev/null
echo "check-binary: $binary needs only: $(echo $libraries | tr '\n' ' ')"
