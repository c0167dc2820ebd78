#!/usr/bin/env bash
# The long fuzzing runs (CI runs a bounded slice of each in scripts/test.sh):
# 10,000,000 request lines through the parser and through the live socket
# of a release build, and 1,000,000 mutated provider replies through the
# real provider and engine. Figures in docs/threat-model.md.
#   scripts/fuzz.sh [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-20261129}
swift build -c release --product tokend
swift build --build-tests
TOKEND_FUZZ_LINES=10000000 TOKEND_FUZZ_SEED=$seed swift test --skip-build --filter fuzzedLinesNeverCrashOrSlipThrough
TOKEND_FUZZ_REPLIES=1000000 TOKEND_FUZZ_SEED=$seed swift test --skip-build --filter ProviderReplyFuzzTests
python3 scripts/fuzz-socket.py --tokend "$(swift build -c release --show-bin-path)/tokend" --lines 10000000 --seed "$seed"
