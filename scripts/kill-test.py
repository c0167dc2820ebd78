#!/usr/bin/env python3
"""Crash-safety test: SIGKILL the agent at random moments while it rotates
refresh tokens against a real OAuth2 server, then check no token family was
lost.

django-oauth-toolkit runs with rotation and reuse protection on (5 s access
tokens, 5 s reuse grace), so a refresh token that the agent used but failed
to store, or replayed too late, kills its whole family. After the kills the
agent runs once more; every identity must refresh successfully (twice).

Prints `families lost: N`; exits 1 unless N = 0. Needs TOKEND_TEST_OAUTH2_URL
(scripts/oauth2-server/start.sh) and the tokend binary (--tokend).
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def run(tokend, *args, stdin=None):
    return subprocess.run([tokend, *args], input=stdin, capture_output=True, text=True, check=True).stdout


def identities(tokend, config):
    rows = [json.loads(line) for line in run(tokend, "vault", "list", "--config", config, "--json").splitlines()]
    return {row["name"]: row for row in rows}


def start_agent(tokend, config, log):
    # A fresh session, so a stray signal to the test's process group does not reach it.
    return subprocess.Popen(
        [tokend, "serve", "--config", config], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=log, start_new_session=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokend", required=True, help="path of the tokend binary")
    parser.add_argument("--oauth2-url", default=os.environ.get("TOKEND_TEST_OAUTH2_URL"))
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed, to replay a failure)")
    args = parser.parse_args()
    if not args.oauth2_url:
        sys.exit("kill-test: no OAuth2 server; run scripts/oauth2-server/start.sh first")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill-test: {args.identities} identities, {args.kills} kills, seed {seed}", flush=True)

    work = tempfile.mkdtemp(prefix="tokend-kill-")
    config = os.path.join(work, "tokend.toml")
    secret = os.path.join(work, "client.secret")
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
        handle.write("tokend-refresh-secret\n")
    with open(config, "w") as handle:
        handle.write(f"""
[vault]
path = "{work}/vault.db"
key_file = "{work}/vault.key"

[providers.dot]
kind = "oauth2"
token_endpoint = "{args.oauth2_url}/o/token/"
client_id = "tokend-refresh"
client_secret_file = "{secret}"
allow_insecure_http = true
""")
    run(args.tokend, "vault", "init", "--config", config)
    request = urllib.request.Request(f"{args.oauth2_url}/test/mint?count={args.identities}", method="POST")
    tokens = json.load(urllib.request.urlopen(request, timeout=60))["refresh_tokens"]
    lines = "".join(
        json.dumps({"name": f"user-{index:04d}", "provider": "dot", "refresh_token": token}) + "\n"
        for index, token in enumerate(tokens))
    run(args.tokend, "vault", "import", "--config", config, stdin=lines)

    log = open(os.path.join(work, "agent.log"), "w")
    started = time.monotonic()
    for kill in range(1, args.kills + 1):
        agent = start_agent(args.tokend, config, log)
        time.sleep(rng.uniform(0.3, 3.0))
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    print(f"kill-test: {args.kills} kills in {time.monotonic() - started:.0f} s", flush=True)

    before = identities(args.tokend, config)
    agent = start_agent(args.tokend, config, log)
    deadline = time.monotonic() + 60
    lost = set(before)
    while time.monotonic() < deadline and lost:
        time.sleep(1)
        now = identities(args.tokend, config)
        # Two successful refreshes after the last restart: the stored
        # refresh token was alive, and so was the one it rotated to.
        lost = {
            name for name, row in now.items()
            if row["state"] != "fresh" or row["generation"] < before[name]["generation"] + 2
        }
        if any(row["state"] == "reauth_required" for row in now.values()):
            break  # a dead family does not come back
    agent.send_signal(signal.SIGTERM)
    try:
        code = agent.wait(timeout=10)
    except subprocess.TimeoutExpired:
        agent.kill()
        code = "did not stop within 10 s"
    log.close()
    states = {}
    for row in identities(args.tokend, config).values():
        states[row["state"]] = states.get(row["state"], 0) + 1
    print(f"kill-test: final states {states}; agent exit after SIGTERM: {code}")
    for name in sorted(lost)[:10]:
        print(f"kill-test: lost {name}: {identities(args.tokend, config)[name]}")
    print(f"families lost: {len(lost)}")
    if lost or code != 0:
        print(f"kill-test: agent log kept in {work}/agent.log")
        print("kill-test: 0 passed, 1 failed")
        sys.exit(1)
    subprocess.run(["rm", "-rf", work])
    print("kill-test: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
