#!/usr/bin/env bash
# Makes a throwaway certificate authority and a server certificate it signed,
# for tests of providers over real TLS with a private CA (`ca_file`):
#   DIR/ca.pem  DIR/server.pem  DIR/server.key  (DIR/ca.key is removed)
# The server certificate is valid for 127.0.0.1, localhost and each NAME.
#
#   scripts/make-test-ca.sh DIR [NAME...]
set -euo pipefail
dir=${1:?usage: make-test-ca.sh DIR [NAME...]}
shift
names="IP:127.0.0.1,DNS:localhost"
for name in "$@"; do names="$names,DNS:$name"; done
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=tokend test CA" -keyout ca.key -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$names" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
rm -f ca.key ca.srl server.csr server.ext
chmod 0644 ca.pem server.pem
chmod 0600 server.key
