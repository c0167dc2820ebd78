#!/usr/bin/env python3
"""Fuzzes the live socket of a real `tokend serve` with generated request lines.

The agent gets a fresh vault with identities (a token valid for an hour, so no
provider is called) and listens on a socket in a temporary directory. A peer
that is not an admin (uid 4242 by default, via setpriv; the threat model's
"reader") sends the lines pipelined in batches, over as many connections as
`too_long` and `QUIT` close. Checked for every reply: it is one line that
starts `OK` or `ERR <known code>`, holds only printable ASCII, and a token is
served only for the identity the reader may read. At the end the agent is
still alive, still answers, and its memory did not grow without bound.

    python3 scripts/fuzz-socket.py --tokend .build/debug/tokend --lines 1000000 [--seed N]

CI runs 1,000,000 lines (scripts/test.sh); scripts/fuzz.sh runs 10,000,000.
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

CODES = {b"bad_request", b"unknown_verb", b"too_long", b"forbidden", b"not_found", b"unavailable",
         b"reauth_required", b"busy", b"shutting_down", b"internal"}
VERBS = [b"GET", b"STATUS", b"LIST", b"WATCH", b"PING", b"HELLO", b"ENROLL", b"REFRESH", b"REMOVE",
         b"RELOAD", b"STATS", b"get", b"Ping", b"", b"QUIT"]
NAMES = [b"readable", b"secret", b"nope", b"a" * 128, b"a" * 129, b"-x", b"x/y:z@w", b"\xff", b"\x00",
         b"r\xc3\xa9", b"readable\r", b"..", b"/"]
OPTIONS = [b"min_ttl=5", b"min_ttl=-1", b"min_ttl=1e308", b"min_ttl=NaN", b"min_ttl=99999999999999999999",
           b"min_ttl=", b"=", b"prefix=r", b"after=readable", b"limit=0", b"limit=1001", b"limit=1",
           b"provider=demo", b"refresh_token=x", b"allow=uid:4242", b"logout=1", b"x=\x01", b"k" * 300 + b"=v"]


def line(rng):
    """One request line (without its newline): grammar-shaped, then maybe broken."""
    kind = rng.random()
    if kind < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64))).replace(b"\n", b"")
    if kind < 0.06:
        return b"GET " + b"x" * rng.randrange(4000, 9000)  # over 4096: too_long, connection closed
    parts = [rng.choice(VERBS)]
    for _ in range(rng.randrange(0, 4)):
        parts.append(rng.choice(NAMES) if rng.random() < 0.5 else rng.choice(OPTIONS))
    text = (b" " * rng.randrange(1, 3)).join(parts)
    if rng.random() < 0.05:
        position = rng.randrange(0, len(text) + 1)
        text = text[:position] + bytes([rng.choice([0, 1, 9, 13, 27, 127, 0x80, 0xc3])]) + text[position:]
    return text.replace(b"\n", b"")


def verb_of(request):
    """The verb as the agent reads it: a `\r` before the newline is ignored."""
    request = request[:-1] if request.endswith(b"\r") else request
    return request.split(b" ", 1)[0].upper()


def check(reply, request):
    if not reply.endswith(b"\n") or b"\n" in reply[:-1]:
        raise SystemExit(f"reply is not one line: {reply!r} for {request!r}")
    body = reply[:-1]
    if any(byte < 0x20 or byte > 0x7e for byte in body):
        raise SystemExit(f"reply holds a control or non-ASCII byte: {reply!r} for {request!r}")
    if body == b"OK" or body.startswith(b"OK "):
        fields = body.split(b" ")
        if len(fields) >= 3 and fields[1].startswith(b"at-") and not fields[1].startswith(b"at-readable"):
            raise SystemExit(f"served a token the peer may not read: {reply!r} for {request!r}")
        return
    if body.startswith(b"ERR "):
        code = body.split(b" ")[1]
        if code not in CODES:
            raise SystemExit(f"unknown error code {code!r} for {request!r}")
        return
    raise SystemExit(f"reply is neither OK nor ERR: {reply!r} for {request!r}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for entry in status:
            if entry.startswith("VmRSS:"):
                return int(entry.split()[1])
    return 0


def run_peer(args):
    """The fuzzing peer: runs as the unprivileged uid (see main)."""
    rng = random.Random(args.seed)
    sent = replies = connections = 0
    sock = None
    reader = None
    batch = []
    while sent < args.lines:
        if sock is None:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(args.socket)
            reader = sock.makefile("rb")
            connections += 1
        # A request that ends the connection (too_long, QUIT, WATCH) ends
        # its batch: lines pipelined behind it would be unread at close,
        # and the kernel then resets the connection.
        batch = []
        while len(batch) < min(256, args.lines - sent):
            request = line(rng)
            batch.append(request)
            verb = verb_of(request)
            if len(request) >= 4096 or verb in (b"QUIT", b"WATCH"):
                break
        payload = b"".join(request + b"\n" for request in batch)
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed = False
        for request in batch:
            sent += 1
            verb = verb_of(request)
            reply = reader.readline()
            if not reply:
                raise SystemExit(f"connection closed without a reply to {request!r} (batch: {batch!r})")
            replies += 1
            check(reply, request)
            if reply.startswith(b"ERR too_long") or (verb == b"QUIT" and reply == b"OK BYE\n") or (
                    reply.startswith(b"OK ") and verb == b"WATCH"):
                closed = True
                break
        if closed:
            # The rest of the batch is lost with the connection; start anew.
            sock.close()
            sock = None
    print(json.dumps({"lines": sent, "replies": replies, "connections": connections}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokend", required=True)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--uid", type=int, default=4242)
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return run_peer(args)

    # The peer's group may connect (the socket is never open to others).
    if subprocess.run(["getent", "group", "tokend-fuzz"], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "-g", str(args.uid), "tokend-fuzz"], check=True)
    directory = tempfile.mkdtemp(prefix="tokend-fuzz-")
    os.chmod(directory, 0o755)
    sock = os.path.join(directory, "tokend.sock")
    config = os.path.join(directory, "tokend.toml")
    with open(config, "w") as file:
        file.write(f"""[vault]
path = "{directory}/vault.db"
key_file = "{directory}/vault.key"

[socket]
path = "{sock}"
mode = "0660"
group = "tokend-fuzz"

[providers.demo]
kind = "oauth2"
token_endpoint = "http://127.0.0.1:9/token"
allow_insecure_http = true
client_id = "fuzz"
client_secret_file = "{directory}/demo.secret"
""")
    with open(os.path.join(directory, "demo.secret"), "w") as file:
        file.write("fuzz-secret\n")
    os.chmod(os.path.join(directory, "demo.secret"), 0o600)
    subprocess.run([args.tokend, "vault", "init", "--config", config], check=True, stdout=subprocess.DEVNULL)
    identities = [
        {"name": "readable", "provider": "demo", "refresh_token": "rt-r", "access_token": "at-readable",
         "expires_in": 3600, "allow": [f"uid:{args.uid}"]},
        {"name": "secret", "provider": "demo", "refresh_token": "rt-s", "access_token": "at-secret",
         "expires_in": 3600, "allow": ["uid:1"]},
    ]
    subprocess.run([args.tokend, "vault", "import", "--config", config], check=True,
                   input="".join(json.dumps(i) + "\n" for i in identities).encode())
    log = open(os.path.join(directory, "agent.log"), "wb")
    agent = subprocess.Popen([args.tokend, "serve", "--config", config, "--log-level", "warning"],
                             stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while not os.path.exists(sock):
            if agent.poll() is not None or time.time() > deadline:
                raise SystemExit("the agent did not start: " + open(log.name).read())
            time.sleep(0.05)
        started = time.time()
        rss_before = rss_kib(agent.pid)
        peer = subprocess.run(
            ["setpriv", f"--reuid={args.uid}", f"--regid={args.uid}", "--clear-groups", sys.executable, __file__,
             "--peer", "--tokend", args.tokend, "--socket", sock, "--lines", str(args.lines), "--seed", str(args.seed)],
            capture_output=True)
        if peer.returncode != 0:
            raise SystemExit(f"fuzzing peer failed: {peer.stdout.decode()} {peer.stderr.decode()}")
        result = json.loads(peer.stdout)
        if agent.poll() is not None:
            raise SystemExit(f"the agent died (exit {agent.returncode}): {open(log.name).read()[-2000:]}")
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(sock)
        probe.sendall(b"GET readable\n")
        answer = probe.makefile("rb").readline()
        if not answer.startswith(b"OK at-readable "):
            raise SystemExit(f"the agent no longer serves: {answer!r}")
        rss_after = rss_kib(agent.pid)
        seconds = time.time() - started
        print(f"fuzz-socket: {result['lines']} lines, {result['replies']} replies, "
              f"{result['connections']} connections in {seconds:.1f} s ({result['lines'] / seconds:.0f} lines/s), "
              f"seed {args.seed}; agent RSS {rss_before} -> {rss_after} KiB; agent alive and serving")
        # Everything the peer caused is bounded: no growth with the number of lines.
        if rss_after > rss_before + 64 * 1024:
            raise SystemExit(f"the agent's memory grew by {rss_after - rss_before} KiB")
        agent.send_signal(signal.SIGTERM)
        if agent.wait(timeout=20) != 0:
            raise SystemExit(f"the agent exited {agent.returncode} on SIGTERM")
    finally:
        if agent.poll() is None:
            agent.kill()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
