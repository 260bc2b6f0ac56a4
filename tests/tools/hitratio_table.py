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

With `--miss` (issue #23's table for value sizes that vary) it prints miss ratios
instead: memcached's and ferrocache's, their ratio, libCacheSim GDSF's and BeladySize's
on the same trace and bytes, the byte miss ratios and each server's RSS:

    python3 tests/tools/hitratio_table.py --miss /tmp/hitratio.json /tmp/yardstick.json
"""
import json
import sys


def miss_table(bench, sim):
    print("| workload | -m | memcached | ferrocache | x | GDSF | fc / GDSF | BeladySize | byte miss mc / fc | RSS MiB mc / fc | items fc / mc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst = None
    for c in bench["cells"]:
        s = {r["server"]: r for r in c["servers"]}
        f = s.get("ferrocache") or s.get("inproc")
        if "memcached" not in s or f is None:
            continue
        m = s["memcached"]
        x = f["miss_ratio"] / max(m["miss_ratio"], 1e-9)
        y = sim.get((c["workload"], c["mem_mb"]))
        if y:
            g = y["miss_ratio"].get("GDSF")
            b = y["miss_ratio"].get("BeladySize")
            gs = f"{g:.4f}" if g is not None else "-"
            gx = f"{f['miss_ratio'] / g:.3f}" if g else "-"
            bs = f"{b:.4f}" if b is not None else "-"
        else:
            gs, gx, bs = "-", "-", "-"
        if worst is None or x > worst[0]:
            worst = (x, c["workload"], c["mem_mb"])
        print(
            f"| {c['workload']} | {c['mem_mb']} | {m['miss_ratio']:.4f} | {f['miss_ratio']:.4f} | {x:.3f} | {gs} | {gx} | {bs} "
            f"| {m.get('byte_miss_ratio', 0):.3f} / {f.get('byte_miss_ratio', 0):.3f} "
            f"| {m['rss'] / 2**20:.1f} / {f['rss'] / 2**20:.1f} | {f['curr_items'] / max(m['curr_items'], 1):.2f} |"
        )
    if worst:
        print(f"\nWorst cell: {worst[1]} -m {worst[2]}, miss ratio {worst[0]:.3f}x memcached's.")


def main():
    args = [a for a in sys.argv[1:] if a != "--miss"]
    if len(args) != 2:
        sys.exit("usage: hitratio_table.py [--miss] HITRATIO.json YARDSTICK.json")
    bench = json.load(open(args[0]))
    yard = json.load(open(args[1]))
    sim = {(c["workload"], c["mem_mb"]): c for c in yard["cells"] if c["size_model"] == "ours"}
    if "--miss" in sys.argv[1:]:
        miss_table(bench, sim)
        return
    print("| workload | -m | memcached | ferrocache | x | best online (policy) | bar | Belady | total miss fc / mc | items fc / mc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in bench["cells"]:
        s = {r["server"]: r for r in c["servers"]}
        f = s.get("ferrocache") or s.get("inproc")
        if "memcached" not in s or f is None:
            continue
        m = s["memcached"]
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
