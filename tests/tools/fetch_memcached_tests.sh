#!/usr/bin/env bash
# Fetches memcached 1.6.18's own test suite (t/) from Debian's source package into
# DEST (default: target/memcached-src), for tests/suite/memcached_suite.rs. The package
# lists are kept in DEST too: the machine's apt configuration is not changed.
set -euo pipefail
DEST="${1:-$(dirname "$0")/../../target/memcached-src}"
mkdir -p "$DEST/apt/lists/partial"
DEST="$(cd "$DEST" && pwd)"
if [ -f "$DEST/memcached-1.6.18/t/idle-timeout.t" ]; then
    echo "memcached 1.6.18 tests already in $DEST"
    exit 0
fi
cat >"$DEST/apt/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
SRC
APT=(-o "Dir::Etc::SourceList=$DEST/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o "Dir::State::Lists=$DEST/apt/lists" -o Debug::NoLocking=1)
apt-get "${APT[@]}" update -qq
cd "$DEST"
apt-get "${APT[@]}" source --download-only -qq memcached
tar xJf memcached_1.6.18.orig.tar.xz memcached-1.6.18/t
rm -f memcached_1.6.18*.tar.xz memcached_1.6.18*.dsc
echo "memcached 1.6.18 tests in $DEST/memcached-1.6.18/t"
