#!/usr/bin/env bash
# Builds the Debian package tokend_VERSION_ARCH.deb with dpkg-deb, no network:
# the static binary (scripts/build-release.sh), the systemd units, the
# sysusers.d and tmpfiles.d snippets, the default configuration as a
# conffile, the docs and a man page generated from the binary's own help.
# The maintainer scripts are in packaging/deb/. Prints the .deb's path.
#
#   scripts/build-deb.sh [--binary PATH] [--version VERSION] [OUTPUT_DIR]
#
# --binary skips the release build (use a binary build-release.sh made);
# --version overrides the version in Sources/TokendCore/TokendVersion.swift
# (the end-to-end test builds a "newer" package to test upgrades).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="" version="" out=.build/dist
while (($#)); do
    case "$1" in
    --binary) binary=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    -*) echo "build-deb.sh: unknown option $1" >&2; exit 64 ;;
    *) out=$1; shift ;;
    esac
done
[ -n "$binary" ] || binary=$(scripts/build-release.sh)
[ -n "$version" ] || version=$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/TokendCore/TokendVersion.swift)
[[ "$version" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "build-deb.sh: bad version '$version'" >&2; exit 64; }
arch=$(dpkg --print-architecture)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/lib/sysusers.d" \
    "$root/usr/lib/tmpfiles.d" "$root/etc/tokend" "$root/usr/share/doc/tokend" "$root/usr/share/man/man1"
install -m 0755 "$binary" "$root/usr/bin/tokend"
install -m 0644 systemd/tokend.service systemd/tokend.socket "$root/lib/systemd/system/"
install -m 0644 systemd/tokend.sysusers "$root/usr/lib/sysusers.d/tokend.conf"
install -m 0644 systemd/tokend.tmpfiles "$root/usr/lib/tmpfiles.d/tokend.conf"
install -m 0644 packaging/deb/tokend.toml "$root/etc/tokend/tokend.toml"
install -m 0644 README.md docs/install.md docs/fleet.md packaging/deb/copyright "$root/usr/share/doc/tokend/"
# The fleet store's drop-in is an example the administrator copies (it
# names a credential file that must exist and a PostgreSQL service that may
# not): docs/fleet.md, "Running it under systemd".
install -D -m 0644 systemd/tokend-fleet.conf "$root/usr/share/doc/tokend/examples/tokend-fleet.conf"
gzip -9n "$root/usr/share/doc/tokend/README.md"
# A native package's changelog: one entry, dated by the last commit (so two
# builds of one commit are identical).
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
printf 'tokend (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- tokend maintainers <tokend@packages.invalid>  %s\n' \
    "$version" "$version" "$date" >"$work/changelog"
gzip -9nc "$work/changelog" >"$root/usr/share/doc/tokend/changelog.gz"
chmod 0644 "$root/usr/share/doc/tokend/changelog.gz"
"$binary" --experimental-dump-help | python3 scripts/help-to-man.py "$version" | gzip -9n >"$root/usr/share/man/man1/tokend.1.gz"
chmod 0644 "$root/usr/share/man/man1/tokend.1.gz"

# The lintian tags that remain, each with the reason it is accepted.
install -D -m 0644 packaging/deb/lintian-overrides "$root/usr/share/lintian/overrides/tokend"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
echo /etc/tokend/tokend.toml >"$root/DEBIAN/conffiles"
# Depends: the shared libraries the binary links (dpkg-shlibdeps reads
# them from the binary), systemd for sysusers/tmpfiles/credentials, and
# procps for /bin/kill (ExecReload=).
mkdir -p "$work/src/debian"
printf 'Source: tokend\n\nPackage: tokend\nArchitecture: any\n' >"$work/src/debian/control"
libs=$(cd "$work/src" && dpkg-shlibdeps -O "$root/usr/bin/tokend" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$libs" ] || { echo "build-deb.sh: dpkg-shlibdeps found no libraries" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: tokend
Version: $version
Architecture: $arch
Maintainer: tokend maintainers <tokend@packages.invalid>
Installed-Size: $size
Depends: $libs, systemd (>= 250), procps
Section: admin
Priority: optional
Description: token agent: keeps OAuth access tokens fresh for local programs
 tokend holds each service identity's refresh token (or client
 credentials) in an encrypted SQLite vault, refreshes access tokens before
 they expire, and hands the current token to local programs over a Unix
 socket (/run/tokend/tokend.sock, for members of group tokend-clients).
 The agent runs as a hardened systemd service, started by its socket.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/tokend_${version}_${arch}.deb"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
    dpkg-deb --root-owner-group -Zgzip -z9 --build "$root" "$deb" >&2
echo "$(cd "$out" && pwd)/$(basename "$deb")"
