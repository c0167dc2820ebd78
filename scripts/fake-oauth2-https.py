#!/usr/bin/env python3
"""A small OAuth2 token endpoint over HTTPS, for tests that need real TLS.

Used by the Swift test of `ca_file` (Tests/TokendProvidersTests) and by the
systemd end-to-end test (scripts/systemd-e2e.sh), which runs it inside the
container. Only the standard library, so it runs on a minimal Debian root.

POST .../token, client_secret_basic with the id and the secret read from
--client-secret-file:
  grant_type=client_credentials  -> a new access token
  grant_type=refresh_token       -> a new access token and a rotated refresh
                                    token. Per family, only the newest refresh
                                    token and the one just used (for a retry
                                    after a crash) are accepted; anything
                                    older is answered invalid_grant and
                                    recorded in --rejected-file, so a refresh
                                    token the agent lost shows up there
Refresh tokens to accept at the start are read from --refresh-tokens-file
(one per line). Every token issued is appended to --issued-file, so a test
can look for them where they must not be (logs, the journal).
Prints "listening PORT" on stdout once it accepts connections.
"""
import argparse
import base64
import http.server
import json
import secrets
import ssl
import sys
import threading
import urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--cert", required=True, help="server certificate chain, PEM")
parser.add_argument("--key", required=True, help="server private key, PEM")
parser.add_argument("--client-id", default="tokend")
parser.add_argument("--client-secret-file", required=True)
parser.add_argument("--refresh-tokens-file")
parser.add_argument("--issued-file", required=True)
parser.add_argument("--rejected-file", help="one line per invalid_grant answered")
parser.add_argument("--expires-in", type=int, default=3600)
args = parser.parse_args()

with open(args.client_secret_file) as f:
    client_secret = f.read().strip()
# family number -> the refresh tokens it accepts now
families = {}
if args.refresh_tokens_file:
    with open(args.refresh_tokens_file) as f:
        families = {n: {line.strip()} for n, line in enumerate(f) if line.strip()}
lock = threading.Lock()


def issue(prefix):
    token = prefix + secrets.token_urlsafe(24)
    with open(args.issued_file, "a") as f:
        f.write(token + "\n")
    return token


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not self.path.endswith("/token") or length > 65536:
            return self.answer(404, {"error": "not_found"})
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        expected = "Basic " + base64.b64encode(
            (urllib.parse.quote(args.client_id, safe="") + ":" + urllib.parse.quote(client_secret, safe="")).encode()
        ).decode()
        if self.headers.get("Authorization") != expected:
            return self.answer(401, {"error": "invalid_client"})
        grant = form.get("grant_type", [""])[0]
        body = {"token_type": "Bearer", "expires_in": args.expires_in}
        if grant == "client_credentials":
            body["access_token"] = issue("at-")
        elif grant == "refresh_token":
            used = form.get("refresh_token", [""])[0]
            with lock:
                family = next((n for n, accepted in families.items() if used in accepted), None)
                if family is None:
                    if args.rejected_file:
                        with open(args.rejected_file, "a") as f:
                            f.write("invalid_grant\n")
                    return self.answer(400, {"error": "invalid_grant"})
                body["refresh_token"] = issue("rt-")
                families[family] = {used, body["refresh_token"]}
            body["access_token"] = issue("at-")
        else:
            return self.answer(400, {"error": "unsupported_grant_type"})
        self.answer(200, body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args.cert, args.key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
