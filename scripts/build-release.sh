#!/usr/bin/env bash
# Builds the deployable binary: release, the Swift runtime linked statically
# (--static-swift-stdlib), stripped. It needs only what Debian 12 ships
# (libc, libstdc++, libsqlite3, zlib). Prints the binary's path on stdout.
#
#   scripts/build-release.sh [OUTPUT_DIR]     (default .build/dist)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build/dist}
swift build -c release --static-swift-stdlib --product tokend >&2
bin="$(swift build -c release --static-swift-stdlib --show-bin-path)/tokend"
mkdir -p "$out"
strip -o "$out/tokend.tmp" "$bin"
mv -f "$out/tokend.tmp" "$out/tokend"
echo "$(cd "$out" && pwd)/tokend"
