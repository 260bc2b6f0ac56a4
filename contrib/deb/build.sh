#!/usr/bin/env bash
# Builds the Debian package: release binaries, man pages and shell completions, then
# `cargo deb --no-build` (metadata: [package.metadata.deb] in Cargo.toml). The last
# line printed is the path of the .deb. Needs cargo-deb (`cargo install --locked
# cargo-deb`) and dpkg-dev (dpkg-shlibdeps, for the Depends line).
#
#   bash contrib/deb/build.sh              build, then package
#   bash contrib/deb/build.sh --no-build   package the binaries already in target/release
#
# FERROCACHE_COMMIT, when set, is built into the binaries (`stats`: ferrocache_commit).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"

if [ "${1:-}" != "--no-build" ]; then
    "$CARGO" build --release --bins
fi
target="$("$CARGO" metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="$target/release"
assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin/ferrocache" --man >"$assets/man/ferrocache.1"
"$bin/ferrocache-cli" --man >"$assets/man/ferrocache-cli.1"
"$bin/ferrocache-bench" --man >"$assets/man/ferrocache-bench.1"
"$bin/ferrocache-cli" --completions bash >"$assets/completions/ferrocache-cli"
"$bin/ferrocache-cli" --completions zsh >"$assets/completions/_ferrocache-cli"
"$bin/ferrocache-cli" --completions fish >"$assets/completions/ferrocache-cli.fish"
"$CARGO" deb --no-build --strip --output "$target/debian"
