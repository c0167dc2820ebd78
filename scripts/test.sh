#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs test dependencies, then
# builds and runs every test. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
