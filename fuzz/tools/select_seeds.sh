#!/usr/bin/env bash
# Regenerates the committed seed corpus fuzz/seeds/<target>/: writes the candidates
# (tools/make_seeds.py), keeps the subset libFuzzer's -merge=1 needs to cover the same
# features, and copies those under their descriptive names. Run after `cargo fuzz
# build` (fuzz/run.sh does that); bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/x86_64-unknown-linux-gnu/release
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 tools/make_seeds.py "$tmp/cand"
for t in text binary auth snapshot cluster; do
    mkdir -p "$tmp/sel/$t"
    timeout 600 "$bin/$t" -merge=1 -use_counters=0 -max_len=32768 "$tmp/sel/$t" "$tmp/cand/$t" \
        >"$tmp/merge-$t.log" 2>&1
    rm -rf "seeds/$t"
    mkdir -p "seeds/$t"
    for f in "$tmp/cand/$t"/*; do
        h=$(sha1sum "$f" | cut -d' ' -f1)
        if [ -e "$tmp/sel/$t/$h" ]; then
            cp "$f" "seeds/$t/"
            rm "$tmp/sel/$t/$h"   # duplicates: the first name wins
        fi
    done
    echo "seeds/$t: $(ls "seeds/$t" | wc -l) files, $(du -sb "seeds/$t" | cut -f1) bytes"
done
