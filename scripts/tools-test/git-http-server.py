#!/usr/bin/env python3
"""A git server over HTTP (the "dumb" protocol: plain files) that demands
a token, for the git credential helper test.

Every request needs HTTP Basic authentication with --user and, as the
password, the token in --token-file (read at each request, so the test can
change it). Without it: 401 and a WWW-Authenticate challenge, which makes
git ask its credential helper. Each attempt is appended to --record as
"ok" or "denied".

Usage: git-http-server.py --root DIR --user NAME --token-file F --record F --port-file F
"""
import argparse
import base64
import http.server
import os


def main():
    parser = argparse.ArgumentParser()
    for name in ("--root", "--user", "--token-file", "--record", "--port-file"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.authorized():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="tokend-test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path = os.path.normpath(self.path.split("?", 1)[0]).lstrip("/")
            full = os.path.join(args.root, path)
            if path.startswith("..") or not os.path.isfile(full):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with open(full, "rb") as f:
                data = f.read()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorized(self):
            header = self.headers.get("Authorization")
            if header is None:
                return False
            with open(args.token_file) as f:
                expected = f.read().strip()
            ok = False
            if header.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    ok = user == args.user and password == expected and expected != ""
                except ValueError:
                    ok = False
            with open(args.record, "a") as record:
                record.write(("ok" if ok else "denied") + "\n")
            return ok

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as port_file:
        port_file.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
