#!/usr/bin/env python3
"""Markdown table of a `ferrocache-bench hitratio --json` sweep beside the
libCacheSim yardstick's figures (`libcachesim_yardstick.py --json`) for the same
traces: per cell the avoidable miss ratio of memcached, of ferrocache, of the best
online policy and of Belady (the offline optimum), under the yardstick's `ours` size
model (objects cost ferrocache's item size). Pure standard library; used for
BENCHMARKS.md:

    python3 tests/tools/hitratio_table.py /tmp/hitratio.json /tmp/yardstick.json

Avoidable = (misses - first requests - expiry misses) / requests for the servers
(expiry misses: requests of a TTL key after its expiry, forced on every cache), and
miss ratio - first-request ratio for the simulated policies, which ignore TTLs (so on
the `ttl` workload they are no bar). Target of issue #11: x = ferrocache/memcached
<= 0.80 at -m 8..32, <= 0.90 at 64 and 128. `bar` = the best online policy over
memcached: where it is above the target, no studied policy reaches the target.
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: hitratio_table.py HITRATIO.json YARDSTICK.json")
    bench = json.load(open(sys.argv[1]))
    yard = json.load(open(sys.argv[2]))
    sim = {(c["workload"], c["mem_mb"]): c for c in yard["cells"] if c["size_model"] == "ours"}
    print("| workload | -m | memcached | ferrocache | x | best online (policy) | bar | Belady | total miss fc / mc | items fc / mc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in bench["cells"]:
        s = {r["server"]: r for r in c["servers"]}
        if "memcached" not in s or "ferrocache" not in s:
            continue
        m, f = s["memcached"], s["ferrocache"]
        req = max(m["requests"], 1)

        def avoid(r):
            return (r["misses"] - r["first_request_misses"] - r["expired_misses"]) / req

        ma, fa = avoid(m), avoid(f)
        x = f"{fa / ma:.3f}" if ma >= 0.001 else "n/a"
        y = sim.get((c["workload"], c["mem_mb"]))
        if y and c["workload"] != "ttl":
            bo = y["best_online_avoidable"]
            best = f"{bo:.4f} ({y['best_online']})"
            bar = f"{bo / ma:.3f}" if ma >= 0.001 else "n/a"
            bel = f"{y['optimal_avoidable']:.4f}"
        else:
            best, bar, bel = "-", "-", "-"
        tot = f"{f['miss_ratio'] / max(m['miss_ratio'], 1e-9):.3f}"
        items = f"{f['curr_items'] / max(m['curr_items'], 1):.2f}"
        print(f"| {c['workload']} | {c['mem_mb']} | {ma:.4f} | {fa:.4f} | {x} | {best} | {bar} | {bel} | {tot} | {items} |")


if __name__ == "__main__":
    main()
