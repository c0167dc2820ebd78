#!/usr/bin/env python3
"""A fake Kubernetes API server for the kubectl exec-plugin test.

client-go runs an exec credential plugin only over TLS, so this serves
HTTPS on 127.0.0.1 with the certificate it is given. Every request's
bearer token is appended to --record; a request without one gets 401,
one with it gets a small JSON body.

Usage: kube-apiserver.py --cert C --key K --record FILE --port-file FILE
"""
import argparse
import http.server
import json
import ssl


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            header = self.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                self.reply(401, {"kind": "Status", "status": "Failure", "code": 401})
                return
            with open(args.record, "a") as record:
                record.write(header[len("Bearer "):] + "\n")
            self.reply(200, {"kind": "Status", "status": "Success", "path": self.path})

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with open(args.port_file + ".tmp", "w") as port_file:
        port_file.write(str(server.server_address[1]))
    import os
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
