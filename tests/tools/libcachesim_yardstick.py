#!/usr/bin/env python3
"""External yardstick for `ferrocache-bench hitratio`: what well-known eviction
policies (libCacheSim's LRU, S3-FIFO, SIEVE, W-TinyLFU) and the offline optimum
(Belady) would miss on exactly the traces the benchmark replays against memcached and
ferrocache, at the same cache sizes.

How to run
----------
This script installs nothing. libCacheSim's Python bindings are on PyPI as
`libcachesim` (tested with 0.3.5; GPL: used here only as an outside measuring tool,
nothing of it is vendored or linked into ferrocache). Put it in a virtual env:

    python3 -m venv /tmp/lcs && /tmp/lcs/bin/pip install libcachesim

Write the traces (and, if you want the servers' figures beside the simulated ones,
run the sweep with --json at the same time), then run the yardstick on them:

    cargo build --release
    ./target/release/ferrocache-bench hitratio --quick --write-trace /tmp/traces --json /tmp/hitratio.json
    # or only the traces, no servers:
    ./target/release/ferrocache-bench hitratio --quick --write-trace /tmp/traces --trace-only
    /tmp/lcs/bin/python tests/tools/libcachesim_yardstick.py /tmp/traces \
        --bench-json /tmp/hitratio.json --json /tmp/yardstick.json

Options: --mem 8,64 (MiB; default: the sizes in the manifest), --workloads a,b
(default: all in the manifest), --policies (default LRU,S3FIFO,Sieve,WTinyLFU,Belady;
any libcachesim class name, e.g. BeladySize, ARC, TwoQ), --size-models item,chunk.
Run time, single-threaded: about 1 minute for the --quick traces, 16 minutes for the
default sweep's (80 cells x 5 policies x 2 size models at 2M requests; half with
--size-models item).

What it computes
----------------
The traces are libCacheSim oracleGeneral files (24-byte packed little-endian records
<u32 clock_time, u64 obj_id, u32 obj_size, i64 next_access_vtime>, written by
ferrocache-bench; see src/bin/ferrocache-bench/trace.rs). obj_size is the item as
memcached 1.6 accounts it in its `bytes` stat: key + value + 59 bytes (48 B item
header, 8 B CAS, key NUL, the value's stored CRLF). A libCacheSim `get` inserts on a
miss, which is the benchmark's cache-aside client.

Cache size = -m MiB in bytes, under two size models:

* `item`: objects cost their memcached item size (as written in the trace). This is a
  cache with memcached's per-item header but no slab waste: the bar for an allocator
  that wastes nothing.
* `ours`: objects cost key + value + ferrocache's per-item overhead (15 B header with
  CAS, ~8 B of hash index), the "after accounting for our item sizes" bar: the same
  policies given ferrocache's item sizes.
* `chunk`: objects cost the memcached slab chunk they would occupy (the default
  ladder of memcached 1.6: 96 B, x1.25, 8-byte aligned; `memcached -vv` prints it).
  This is the -m capacity reduced by memcached's per-item overhead *including* its
  chunk rounding (~10% on average), i.e. the bar for memcached's own allocator with a
  better eviction policy. It does not model memcached's 1 MiB page granularity, nor
  that memcached gives every slab class its first page even past -m (at -m 8 with wide
  values memcached allocates ~19 MiB), nor ferrocache's smaller 15 B header.

For each cell it prints the miss ratio of each policy, the first-request (compulsory)
ratio of the trace, the avoidable miss ratio (miss ratio - compulsory) of the best
online policy and of Belady, and, with --bench-json, memcached's and ferrocache's
measured miss ratios from the same trace. libCacheSim ignores TTLs in oracleGeneral
traces: for the `ttl` workload the simulated caches never expire anything, so their
miss ratios are lower bounds that no TTL-honouring server can reach.
"""

import argparse
import json
import os
import sys
import tempfile
import time

try:
    import numpy as np
    import libcachesim as lcs
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(
        f"libcachesim_yardstick: {e}; install the bindings first:\n"
        "  python3 -m venv /tmp/lcs && /tmp/lcs/bin/pip install libcachesim\n"
        "and run this script with /tmp/lcs/bin/python"
    )

RECORD = np.dtype(
    [("clock_time", "<u4"), ("obj_id", "<u8"), ("obj_size", "<u4"), ("next_access_vtime", "<i8")]
)
assert RECORD.itemsize == 24

DEFAULT_POLICIES = ["LRU", "S3FIFO", "Sieve", "WTinyLFU", "GDSF", "LHD", "Belady", "BeladySize"]
OFFLINE = {"Belady", "BeladySize"}
MiB = 1 << 20


def memcached_chunk_ladder(factor=1.25, first=96, align=8, largest=512 * 1024):
    """Chunk sizes of memcached 1.6's default slab classes (-f 1.25 -n 48)."""
    sizes = []
    size = first
    while size < largest / factor:
        if size % align:
            size += align - size % align
        sizes.append(size)
        size = int(size * factor)
    sizes.append(largest)
    return np.array(sizes, dtype=np.int64)


def chunk_sizes(obj_size):
    ladder = memcached_chunk_ladder()
    idx = np.searchsorted(ladder, obj_size, side="left")
    if (idx >= len(ladder)).any():
        raise SystemExit("an object is larger than memcached's largest chunk; not modelled")
    return ladder[idx].astype("<u4")


# ferrocache's cost of an item beyond key + value: its header (9 B, + 6 B CAS, + 4 B
# when it has an expiry; flags are 0 in these traces) and its share of the hash index
# (a 4-byte slot at ~0.5-0.9 load: ~8 B), against memcached's 59 B in the trace.
OURS_OVERHEAD = 9 + 6 + 8
MEMCACHED_OVERHEAD = 59


def ours_sizes(obj_size):
    return np.maximum(obj_size - MEMCACHED_OVERHEAD, 1) + OURS_OVERHEAD


def load_manifest(trace_dir):
    path = os.path.join(trace_dir, "manifest.json")
    with open(path) as f:
        return json.load(f)


def bench_figures(path):
    """(workload, mem) -> {server: miss_ratio, ...} from `hitratio --json`."""
    if not path:
        return {}
    with open(path) as f:
        j = json.load(f)
    out = {}
    for c in j.get("cells", []):
        d = {}
        for s in c.get("servers", []):
            d[s["server"]] = s["miss_ratio"]
        out[(c["workload"], c["mem_mb"])] = d
    return out


def simulate(path, policy, cache_bytes):
    reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
    cls = getattr(lcs, policy, None)
    if cls is None:
        raise SystemExit(f"libcachesim has no policy {policy!r}")
    cache = cls(cache_size=int(cache_bytes))
    miss_ratio, byte_miss_ratio = cache.process_trace(reader)
    return float(miss_ratio), float(byte_miss_ratio)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace_dir", help="directory written by ferrocache-bench hitratio --write-trace")
    ap.add_argument("--mem", help="cache sizes in MiB, comma separated (default: the manifest's)")
    ap.add_argument("--workloads", help="workloads, comma separated (default: all in the manifest)")
    ap.add_argument("--policies", default=",".join(DEFAULT_POLICIES))
    ap.add_argument("--size-models", default="item,chunk,ours",
                    help="comma list of item, chunk, ours")
    ap.add_argument("--bench-json", help="`ferrocache-bench hitratio --json` output to show beside")
    ap.add_argument("--json", help="write every figure here")
    a = ap.parse_args()

    man = load_manifest(a.trace_dir)
    mems = [int(x) for x in a.mem.split(",")] if a.mem else list(man["mem_mb"])
    policies = [p.strip() for p in a.policies.split(",") if p.strip()]
    models = [m.strip() for m in a.size_models.split(",") if m.strip()]
    for m in models:
        if m not in ("item", "chunk", "ours"):
            raise SystemExit(f"unknown size model {m!r} (item, chunk, ours)")
    wanted = set(a.workloads.split(",")) if a.workloads else None
    workloads = [w for w in man["workloads"] if w.get("file") and (wanted is None or w["name"] in wanted)]
    if not workloads:
        raise SystemExit("no workload traces selected")
    bench = bench_figures(a.bench_json)
    online = [p for p in policies if p not in OFFLINE]

    print(
        f"libCacheSim {getattr(lcs, '__version__', '?')} yardstick over {a.trace_dir}: "
        f"cache = -m MiB; size models {', '.join(models)}; policies {', '.join(policies)}"
    )
    results = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="yardstick-") as tmp:
        for w in workloads:
            path = os.path.join(a.trace_dir, w["file"])
            recs = np.fromfile(path, dtype=RECORD)
            n = len(recs)
            first = len(np.unique(recs["obj_id"])) / n if n else 0.0
            paths = {}
            for model in models:
                if model == "item":
                    paths[model] = path
                else:
                    r2 = recs.copy()
                    sizes = r2["obj_size"].astype(np.int64)
                    if model == "chunk":
                        r2["obj_size"] = chunk_sizes(sizes)
                    else:
                        r2["obj_size"] = ours_sizes(sizes)
                    p2 = os.path.join(tmp, f"{w['name']}.{model}.bin")
                    r2.tofile(p2)
                    paths[model] = p2
            del recs
            note = "  (TTLs ignored by the simulator)" if w["name"] == "ttl" else ""
            print()
            print(f"== {w['name']}: {w['describe']}; {n} requests, first requests {first:.4f}{note}")
            hdr = f"{'model':<6} {'-m':>4} " + " ".join(f"{p:>9}" for p in policies)
            hdr += f" {'best_online':>12} {'best_avoid':>10} {'opt_avoid':>9}"
            if bench:
                hdr += f" {'memcached':>9} {'ferrocache':>10} {'mc_avoid':>8} {'fc_avoid':>8}"
            print(hdr)
            for model in models:
                for mem in mems:
                    cell = {"workload": w["name"], "size_model": model, "mem_mb": mem,
                            "cache_bytes": mem * MiB, "requests": n, "first_request_ratio": first,
                            "miss_ratio": {}, "byte_miss_ratio": {}}
                    for p in policies:
                        mr, bmr = simulate(paths[model], p, mem * MiB)
                        cell["miss_ratio"][p] = mr
                        cell["byte_miss_ratio"][p] = bmr
                    best = min(online, key=lambda p: cell["miss_ratio"][p]) if online else None
                    cell["best_online"] = best
                    line = f"{model:<6} {mem:>4} " + " ".join(f"{cell['miss_ratio'][p]:>9.4f}" for p in policies)
                    if best:
                        ba = max(0.0, cell["miss_ratio"][best] - first)
                        cell["best_online_avoidable"] = ba
                        line += f" {best:>12} {ba:>10.4f}"
                    else:
                        line += f" {'-':>12} {'-':>10}"
                    opt = [p for p in policies if p in OFFLINE]
                    if opt:
                        oa = max(0.0, cell["miss_ratio"][opt[0]] - first)
                        cell["optimal_avoidable"] = oa
                        line += f" {oa:>9.4f}"
                    else:
                        line += f" {'-':>9}"
                    b = bench.get((w["name"], mem))
                    if bench:
                        if b:
                            mc = b.get("memcached")
                            fc = b.get("ferrocache")
                            cell["bench_miss_ratio"] = b
                            f4 = lambda v: f"{v:.4f}" if v is not None else "-"
                            av = lambda v: max(0.0, v - first) if v is not None else None
                            line += f" {f4(mc):>9} {f4(fc):>10} {f4(av(mc)):>8} {f4(av(fc)):>8}"
                        else:
                            line += f" {'-':>9} {'-':>10} {'-':>8} {'-':>8}"
                    print(line, flush=True)
                    results.append(cell)
    print(f"\nyardstick time {time.time() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"tool": "libcachesim_yardstick", "libcachesim": getattr(lcs, "__version__", None),
                       "trace_dir": a.trace_dir, "policies": policies, "size_models": models,
                       "mem_mb": mems, "cells": results}, f, indent=1)


if __name__ == "__main__":
    main()
