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

`--before OLD.json` (a `hitratio --servers ferrocache --json` run of an earlier build,
`FERROCACHE=<its binary>`, same workloads and sizes) adds that build's figures in a
column "before" (miss ratio with --miss, avoidable miss ratio without).
"""
import json
import sys


def server_pairs(bench):
    """(cell, memcached's row, ferrocache's row) of every cell that has both."""
    for c in bench["cells"]:
        s = {r["server"]: r for r in c["servers"]}
        f = s.get("ferrocache") or s.get("inproc")
        if "memcached" in s and f is not None:
            yield c, s["memcached"], f


def before_of(before, c, key):
    """The earlier build's figure for cell c (None without --before)."""
    old = before.get((c["workload"], c["mem_mb"])) if before else None
    return None if old is None else key(old)


def miss_table(bench, sim, before=None):
    print("| workload | -m | memcached | ferrocache | x |" + (" before |" if before else "") + " GDSF | fc / GDSF | BeladySize | byte miss mc / fc | RSS MiB mc / fc | items fc / mc |")
    print("|---|---:|---:|---:|---:|" + ("---:|" if before else "") + "---:|---:|---:|---:|---:|---:|")
    worst = None
    for c, m, f in server_pairs(bench):
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
        old = before_of(before, c, lambda r: r["miss_ratio"])
        bcol = "" if before is None else (f" {old:.4f} |" if old is not None else " - |")
        print(
            f"| {c['workload']} | {c['mem_mb']} | {m['miss_ratio']:.4f} | {f['miss_ratio']:.4f} | {x:.3f} |{bcol} {gs} | {gx} | {bs} "
            f"| {m.get('byte_miss_ratio', 0):.3f} / {f.get('byte_miss_ratio', 0):.3f} "
            f"| {m['rss'] / 2**20:.1f} / {f['rss'] / 2**20:.1f} | {f['curr_items'] / max(m['curr_items'], 1):.2f} |"
        )
    if worst:
        print(f"\nWorst cell: {worst[1]} -m {worst[2]}, miss ratio {worst[0]:.3f}x memcached's.")


def load_before(path):
    """(workload, mem_mb) -> the earlier build's ferrocache row."""
    out = {}
    for c in json.load(open(path))["cells"]:
        for r in c["servers"]:
            if r["server"] in ("ferrocache", "inproc"):
                out[(c["workload"], c["mem_mb"])] = r
    return out


def main():
    argv = sys.argv[1:]
    before = None
    if "--before" in argv:
        i = argv.index("--before")
        if i + 1 >= len(argv):
            sys.exit("--before needs a file")
        before = load_before(argv[i + 1])
        del argv[i : i + 2]
    args = [a for a in argv if a != "--miss"]
    if len(args) != 2:
        sys.exit("usage: hitratio_table.py [--miss] [--before OLD.json] HITRATIO.json YARDSTICK.json")
    bench = json.load(open(args[0]))
    yard = json.load(open(args[1]))
    sim = {(c["workload"], c["mem_mb"]): c for c in yard["cells"] if c["size_model"] == "ours"}
    if "--miss" in argv:
        miss_table(bench, sim, before)
        return
    print("| workload | -m | memcached | ferrocache | x |" + (" before | new / before |" if before else "") + " best online (policy) | bar | Belady | total miss fc / mc | items fc / mc |")
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if before else "") + "---:|---:|---:|---:|---:|")
    ratios = []
    for c, m, f in server_pairs(bench):
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
        bcol = ""
        if before is not None:
            old = before_of(before, c, avoid)
            if old is None:
                bcol = " - | - |"
            elif old >= 0.001:
                ratios.append((fa / old, c["workload"], c["mem_mb"]))
                bcol = f" {old:.4f} | {fa / old:.3f} |"
            else:
                bcol = f" {old:.4f} | n/a |"
        print(f"| {c['workload']} | {c['mem_mb']} | {ma:.4f} | {fa:.4f} | {x} |{bcol} {best} | {bar} | {bel} | {tot} | {items} |")
    if ratios:
        import math

        g = math.exp(sum(math.log(max(r[0], 1e-9)) for r in ratios) / len(ratios))
        w = max(ratios)
        print(
            f"\nAvoidable misses new / before: geometric mean {g:.3f} over {len(ratios)} cells; "
            f"worst {w[1]} -m {w[2]}: {w[0]:.3f}; worse by more than 2 %: "
            + (", ".join(f"{r[1]} -m {r[2]} ({r[0]:.3f})" for r in sorted(ratios) if r[0] > 1.02) or "none")
        )


if __name__ == "__main__":
    main()
