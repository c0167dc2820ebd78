#!/usr/bin/env bash
# Checks the deployment examples users will copy (deploy/): each parses and
# names only fields that exist.
#   - Kubernetes: kubernetes-validate (PyPI) with --strict, against the
#     OpenAPI-derived JSON schemas of Kubernetes 1.33 that it ships, where an
#     unknown field anywhere is an error. It checks names, types and enums,
#     not what the API server would default or admit (no cluster here).
#   - compose: docker-compose 1.29 (Debian) `config`, which validates against
#     the compose specification's schema (unknown keys are errors).
#   - the tokend.toml embedded in the ConfigMap is the one in deploy/compose.
# Each checker is first shown a copy with a misspelt field and must refuse it.
#
#   scripts/check-manifests.sh          (as root on a fresh machine: installs
#                                         docker-compose; a venv in the cache)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${TOKEND_TEST_CACHE:-/var/cache/tokend-test}
venv="$cache/manifest-venv"
fail() { echo "check-manifests: FAIL: $*" >&2; exit 1; }

command -v docker-compose >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >&2
}
[ -x "$venv/bin/kubernetes-validate" ] || {
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate==1.37.0 >&2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

k8s=deploy/kubernetes/tokend-sidecar.yaml
compose=deploy/compose/compose.yaml
kube_version=1.33.0

# The negative controls: one misspelt field each.
"$venv/bin/python" - "$k8s" "$work/bad.yaml" <<'PY'
import sys, yaml
documents = list(yaml.safe_load_all(open(sys.argv[1])))
deployment = next(d for d in documents if d["kind"] == "Deployment")
deployment["spec"]["template"]["spec"]["initContainers"][1]["restartPolcy"] = "Always"
yaml.safe_dump_all(documents, open(sys.argv[2], "w"))
PY
if "$venv/bin/kubernetes-validate" --strict --quiet -k "$kube_version" "$work/bad.yaml" >/dev/null 2>&1; then
    fail "kubernetes-validate accepted a misspelt field: it checks nothing"
fi
sed 's/^    read_only: true/    read_onlyy: true/' "$compose" >"$work/compose.yaml"
cp deploy/compose/tokend.toml "$work/"
if docker-compose -f "$work/compose.yaml" config -q >/dev/null 2>&1; then
    fail "docker-compose accepted a misspelt field: it checks nothing"
fi

"$venv/bin/kubernetes-validate" --strict --quiet -k "$kube_version" "$k8s" || fail "$k8s"
docker-compose -f "$compose" config -q || fail "$compose"
"$venv/bin/python" - "$k8s" deploy/compose/tokend.toml <<'PY' || fail "the ConfigMap's tokend.toml differs from deploy/compose/tokend.toml"
import sys, yaml
config_map = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d["kind"] == "ConfigMap")
embedded = [l.split("#")[0].rstrip() for l in config_map["data"]["tokend.toml"].splitlines()]
on_disk = [l.split("#")[0].rstrip() for l in open(sys.argv[2]).read().splitlines()]
assert [l for l in embedded if l] == [l for l in on_disk if l]
PY
echo "check-manifests: $k8s (Kubernetes $kube_version, strict) and $compose are valid"
