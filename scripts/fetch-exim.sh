#!/usr/bin/env bash
# Fetches Exim 4 for the tests WITHOUT installing it: Debian's exim4 packages conflict with
# postfix (both are the system's mail-transport-agent), so `apt-get download` fetches
# exim4-daemon-light and the one library it needs that Postfix does not (libidn12) and
# `dpkg-deb -x` unpacks them into ${VOLLEY_EXIM_DIR:-target/exim}. benches/src/exim.rs runs the
# daemon from there as a private instance. Nothing of the system changes; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${VOLLEY_EXIM_DIR:-$PWD/target/exim}
if [ -x "$dest/usr/sbin/exim4" ]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "scripts/fetch-exim.sh: downloading exim4-daemon-light and libidn12 into $dest (not installed)"
(cd "$tmp" && apt-get download -qq exim4-daemon-light libidn12)
mkdir -p "$dest"
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dest"; done
echo "scripts/fetch-exim.sh: $(ls "$dest/usr/sbin/exim4")"
