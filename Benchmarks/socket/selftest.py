#!/usr/bin/env python3
"""Checks the benchmark's own programs against hostile peers and inputs, so a
benchmark that misreads a server fails instead of printing a figure.

loadclient against scripted servers: a reply split across many writes and a
reply line over several reads must be counted; an ERR reply, a close before
or in the middle of a reply, a reply of the wrong length, bytes nobody asked
for, a reply that is not "OK ..." and an endless line must each stop it with
exit status 1 and a message naming the problem. Bad arguments exit 2.
lineserver: a request split across writes is answered once per line, a
client that shuts down its write side after its line still gets the reply,
and a reply file that is missing, empty, without a final newline or with two
lines is refused.

    Benchmarks/socket/selftest.py --loadclient BIN --lineserver BIN
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPLY = b"OK " + b"t" * 900 + b" 86399 Bearer\n"


def scripted_server(path, behaviour):
    """Serves every connection with behaviour(conn) on a thread of its own."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)

    def accept_loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    def serve(conn):
        try:
            behaviour(conn)
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=accept_loop, daemon=True).start()
    return listener


def read_line(conn, pending=b""):
    while b"\n" not in pending:
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        pending += chunk
    line, _, rest = pending.partition(b"\n")
    return line, rest


def answer_split(conn):
    """Each reply in 7-byte pieces with a pause: many partial reads."""
    pending = b""
    while True:
        line, pending = read_line(conn, pending)
        if line is None:
            return
        for start in range(0, len(REPLY), 7):
            conn.sendall(REPLY[start:start + 7])
            if start == 14:
                time.sleep(0.001)


def answer_then(bad, after=3):
    """Good replies, then the bad bytes (None: a close) from the request
    after `after` on, counted over all connections (connect mode opens one
    per request)."""
    lock = threading.Lock()
    answered = [0]

    def behaviour(conn):
        pending = b""
        while True:
            line, pending = read_line(conn, pending)
            if line is None:
                return
            with lock:
                answered[0] += 1
                good = answered[0] <= after
            if good:
                conn.sendall(REPLY)
                continue
            if bad is not None:
                conn.sendall(bad)
                time.sleep(3)
            return
    return behaviour


def run(command, timeout=30):
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--loadclient", required=True)
    parser.add_argument("--lineserver", required=True)
    options = parser.parse_args()
    failures = []

    def check(name, ok, detail=""):
        print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""), flush=True)
        if not ok:
            failures.append(name)

    with tempfile.TemporaryDirectory(prefix="loadclient-selftest.") as work:
        client = [options.loadclient, "--request", "GET bench", "--reply-bytes", str(len(REPLY)),
                  "--seconds", "1", "--warmup", "0"]

        path = os.path.join(work, "split.sock")
        server = scripted_server(path, answer_split)
        for mode in ("persistent", "connect"):
            result = run(client + ["--socket", path, "--mode", mode, "--connections", "4", "--label", "split"])
            counted = "requests=" in result.stdout and " requests=0 " not in result.stdout
            check(f"replies split across reads are counted ({mode})", result.returncode == 0 and counted,
                  result.stderr.strip() or result.stdout.strip())
        server.close()

        cases = [
            ("an ERR reply", b"ERR unavailable no valid token for bench: x retry_after=5\n",
             "server error reply: ERR unavailable"),
            ("a close before the reply", None, "closed the connection before replying"),
            ("a close in the middle of a reply", REPLY[:100], "in the middle of a reply"),
            ("a reply of the wrong length", b"OK short 3600 Bearer\n", "expected"),
            ("a reply that is not OK", b"HELLO" + b"x" * (len(REPLY) - 6) + b"\n", "does not start with"),
            # Sent in one write, so read at once; were they read apart, the
            # extra line would be taken as the next reply, of the wrong length.
            ("bytes after the reply", REPLY + b"OK extra\n", ("unexpected bytes", f"expected {len(REPLY)}")),
            ("an endless line", b"OK " + b"x" * 200000, "longer than"),
        ]
        for index, (name, bad, message) in enumerate(cases):
            path = os.path.join(work, f"bad{index}.sock")
            server = scripted_server(path, answer_then(bad))
            for mode in ("persistent", "connect"):
                result = run(client + ["--socket", path, "--mode", mode, "--connections", "2", "--label", "bad"])
                messages = message if isinstance(message, tuple) else (message,)
                check(f"{name} fails the run ({mode})",
                      result.returncode == 1 and any(m in result.stderr for m in messages),
                      f"exit {result.returncode}, stderr {result.stderr.strip()!r}")
            server.close()

        result = run(client + ["--socket", os.path.join(work, "nobody.sock")])
        check("a socket nobody listens on fails the run",
              result.returncode == 1 and "connect" in result.stderr, result.stderr.strip())
        for arguments in (["--connections", "0"], ["--connections", "x"], ["--seconds", "-1"],
                          ["--threads", "65"], ["--mode", "udp"], ["--request", ""], ["--reply-bytes", "1"],
                          ["--socket", "/" + "x" * 200], ["extra"]):
            result = run(client + ["--socket", os.path.join(work, "any.sock")] + arguments)
            check(f"loadclient refuses {arguments}", result.returncode == 2, f"exit {result.returncode}")

        reply_file = os.path.join(work, "reply")
        with open(reply_file, "wb") as file:
            file.write(REPLY)
        os.chmod(reply_file, 0o600)
        path = os.path.join(work, "c.sock")
        server = subprocess.Popen([options.lineserver, path, reply_file])
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.01)
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(path)
            conn.sendall(b"GET ben")
            time.sleep(0.05)
            conn.sendall(b"ch\nGET bench\n")
            received = b""
            while len(received) < 2 * len(REPLY):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received += chunk
            check("lineserver answers a split request once per line", received == REPLY * 2, f"{len(received)} bytes")
            conn.close()
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(path)
            conn.sendall(b"GET bench\n")
            conn.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
            check("lineserver answers a client that shut down its write side, then closes", received == REPLY,
                  f"{len(received)} bytes")
            conn.close()
            for mode in ("persistent", "connect"):
                result = run([options.loadclient, "--socket", path, "--request", "GET bench", "--reply-bytes",
                              str(len(REPLY)), "--seconds", "1", "--warmup", "0", "--mode", mode,
                              "--connections", "8", "--threads", "2"])
                check(f"loadclient and lineserver agree ({mode}, 2 threads)", result.returncode == 0, result.stderr)
        finally:
            server.kill()
            server.wait()

        for name, content in (("missing", None), ("empty", b""), ("without a newline", b"OK x"),
                              ("with two lines", b"OK x\nOK y\n")):
            bad_file = os.path.join(work, "bad-reply")
            if os.path.exists(bad_file):
                os.unlink(bad_file)
            if content is not None:
                with open(bad_file, "wb") as file:
                    file.write(content)
            result = run([options.lineserver, os.path.join(work, "refused.sock"), bad_file], timeout=10)
            check(f"lineserver refuses a reply file {name}", result.returncode == 1, f"exit {result.returncode}")

    if failures:
        print(f"selftest: {len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("selftest: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
