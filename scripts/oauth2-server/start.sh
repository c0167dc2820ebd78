#!/usr/bin/env bash
# Starts django-oauth-toolkit on 127.0.0.1 (a free port) for the tests:
# a venv with it from PyPI (once), a fresh SQLite database, the test
# clients, then the server in the background. Prints the environment the
# tests read, as `export` lines:
#
#     eval "$(scripts/oauth2-server/start.sh)"
#
# Stop it with: kill "$TOKEND_TEST_OAUTH2_PID"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${TOKEND_OAUTH2_VENV:-$here/../../.venv-oauth2}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import oauth2_provider" 2>/dev/null; then
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$here/requirements.txt" >&2
fi

state=$(mktemp -d /tmp/tokend-dot.XXXXXX)
export DOT_DB_PATH="$state/dot.sqlite3"
export DOT_ACCESS_TOKEN_SECONDS="${DOT_ACCESS_TOKEN_SECONDS:-5}"
export DOT_REUSE_GRACE_SECONDS="${DOT_REUSE_GRACE_SECONDS:-5}"
"$venv/bin/python" "$here/manage.py" migrate -v 0 >&2
"$venv/bin/python" "$here/manage.py" bootstrap_clients >&2

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nohup "$venv/bin/python" "$here/manage.py" runserver "127.0.0.1:$port" --noreload \
    >"$state/server.log" 2>&1 </dev/null &
pid=$!

url="http://127.0.0.1:$port"
for _ in $(seq 1 150); do
    if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('$url/test/health', timeout=1)" 2>/dev/null; then
        echo "export TOKEND_TEST_OAUTH2_URL=$url TOKEND_TEST_OAUTH2_PID=$pid TOKEND_TEST_OAUTH2_STATE=$state"
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
done
echo "oauth2 test server did not start; its log:" >&2
cat "$state/server.log" >&2
kill "$pid" 2>/dev/null || true
exit 1
