#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the machine lacks,
# starts the real OAuth2 server the integration tests use
# (django-oauth-toolkit on loopback), builds, and runs every test.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

eval "$(scripts/oauth2-server/start.sh)"
trap 'kill "$TOKEND_TEST_OAUTH2_PID" 2>/dev/null || true; rm -rf "$TOKEND_TEST_OAUTH2_STATE"
      if [ -n "${TOKEND_TEST_POSTGRES_STATE:-}" ]; then scripts/postgres/stop.sh "$TOKEND_TEST_POSTGRES_STATE" || true; fi' EXIT
echo "test OAuth2 server (django-oauth-toolkit) at $TOKEND_TEST_OAUTH2_URL"
# The fleet store's PostgreSQL 15 cluster. Assigned first so that a failed
# start stops the run here (set -e), rather than an empty eval going on.
postgres_env=$(scripts/postgres/start.sh)
eval "$postgres_env"
echo "test PostgreSQL cluster at $TOKEND_TEST_POSTGRES_URL (pid $TOKEND_TEST_POSTGRES_PID)"

swift build --build-tests
# Suites that need root, the OAuth2 server or PostgreSQL fail here instead of skipping.
if [ "$#" -eq 0 ]; then
    TOKEND_TEST_REQUIRE_ALL=1 swift test --skip-build --skip ProviderReplyFuzzTests
    # 100,000 mutated provider replies through the real provider and engine,
    # alone: it keeps the (two-thread) concurrency pool busy for minutes,
    # which would starve the timing of the other suites.
    swift test --skip-build --filter ProviderReplyFuzzTests
else
    TOKEND_TEST_REQUIRE_ALL=1 swift test --skip-build "$@"
fi

# The unit files: systemd-analyze verify, and security exposure <= 2.0.
if [ "$#" -eq 0 ]; then
    scripts/check-systemd.sh "$(swift build --show-bin-path)/tokend"
fi

# The live socket, fuzzed by a peer that is not an admin: 1,000,000 lines
# (scripts/fuzz.sh runs 10,000,000).
if [ "$#" -eq 0 ]; then
    python3 scripts/fuzz-socket.py --tokend "$(swift build --show-bin-path)/tokend" --lines 1000000
    # The benchmark harness itself (its load client against hostile servers,
    # then a second of each mode against the C baseline and tokend; no
    # figures asserted), and the start/memory/idle benchmark on a small vault.
    Benchmarks/socket/run.sh --smoke --tokend "$(swift build --show-bin-path)/tokend"
    python3 Benchmarks/agent/run.py --tokend "$(swift build --show-bin-path)/tokend" --rounds 1 --identities 100 \
        --idle-seconds 1 --connections 10,20 --watchers 10 --out "$(mktemp)"
fi

# Crash safety end to end: SIGKILL the agent 30 times while it rotates
# refresh tokens against django-oauth-toolkit; no token family may be lost.
# Skipped when arguments narrow the run to some tests.
if [ "$#" -eq 0 ]; then
    python3 scripts/kill-test.py --tokend "$(swift build --show-bin-path)/tokend"
fi

# The fleet (issue 14): three agents on one PostgreSQL fleet store (a cluster
# of its own), 300 identities rotating against django-oauth-toolkit; agents
# SIGTERMed and PostgreSQL restarted (no reuse grace), then agents SIGKILLed
# and one frozen past its lease (grace longer than the lease). No family may
# be lost, every agent serves a new token within 1 s, GET is answered while
# the database is down (docs/fleet.md, "Fleet test"). About 6 minutes.
if [ "$#" -eq 0 ]; then
    python3 scripts/fleet-test.py --tokend "$(swift build --show-bin-path)/tokend"
fi

# The deployable binary (static Swift runtime; `ldd` needs only what Debian
# 12 ships), its Debian package (lintian), and the package installed as
# docs/install.md says in a Debian 12 container under a real systemd.
if [ "$#" -eq 0 ]; then
    release=$(scripts/build-release.sh)
    scripts/check-binary.sh "$release"
    scripts/systemd-e2e.sh --binary "$release"
fi

# The sidecar deployment with real containers (podman + runc): the image from
# Containerfile, agent and worker containers sharing only the socket volume,
# health, get --wait, restart on the same vault, read-only root, SIGTERM;
# and the deploy/ examples against their schemas (same release binary).
if [ "$#" -eq 0 ]; then
    scripts/container-test.sh
fi
