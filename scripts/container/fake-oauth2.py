#!/usr/bin/env python3
"""A small OAuth2 token endpoint on loopback for the container tests.

Real HTTP, so tokend's real provider code runs against it: the
client_credentials grant with client_secret_basic, JSON answers as RFC 6749
section 5.1 describes. The client secret is read from a file (never argv).

Control endpoints let a test steer it without sleeping:
  POST /hold     token requests wait (on an event) until /release
  POST /release  answer every held and later token request
  POST /fail     token requests answer 503 until /recover
  POST /recover
  GET  /count    number of tokens issued so far

Prints "port=N" on stdout once it listens (port 0 = any free port).
"""
import argparse
import base64
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

released = threading.Event()
released.set()
failing = threading.Event()
lock = threading.Lock()
issued = 0


def make_handler(client_id, client_secret, lifetime):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("fake-oauth2: " + (fmt % args) + "\n")

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/count":
                with lock:
                    self.answer(200, {"issued": issued})
            else:
                self.answer(404, {"error": "not_found"})

        def do_POST(self):
            global issued
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            controls = {"/hold": released.clear, "/release": released.set,
                        "/fail": failing.set, "/recover": failing.clear}
            if self.path in controls:
                controls[self.path]()
                return self.answer(200, {"ok": True})
            if self.path != "/token":
                return self.answer(404, {"error": "not_found"})
            released.wait()
            if failing.is_set():
                return self.answer(503, {"error": "temporarily_unavailable"})
            expected = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self.answer(401, {"error": "invalid_client"})
            form = parse_qs(body)
            if form.get("grant_type") != ["client_credentials"]:
                return self.answer(400, {"error": "unsupported_grant_type"})
            with lock:
                issued += 1
                number = issued
            self.answer(200, {"access_token": f"fake-at-{number}-{secrets.token_hex(16)}",
                              "token_type": "Bearer", "expires_in": lifetime})

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client-id", default="tokend-container-test")
    parser.add_argument("--client-secret-file", required=True)
    parser.add_argument("--lifetime", type=int, default=3600)
    parser.add_argument("--hold", action="store_true", help="start with token requests held")
    args = parser.parse_args()
    with open(args.client_secret_file) as f:
        secret = f.read().strip()
    if args.hold:
        released.clear()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.client_id, secret, args.lifetime))
    server.daemon_threads = True
    print(f"port={server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
