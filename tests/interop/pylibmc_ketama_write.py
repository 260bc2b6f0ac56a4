#!/usr/bin/python3
"""pylibmc (libmemcached, text protocol, {"ketama_weighted": True}) against a cluster.

Usage: pylibmc_ketama_write.py SERVERS PREFIX N

SERVERS is a comma-separated list as pylibmc takes it (host:port[:weight]), in the
order the other client uses. The script
  1. writes N keys "PREFIX:py:%05d" with the value b"pylibmc:" + key, and
  2. reads N keys "PREFIX:rs:%05d" that the other client wrote beforehand with the
     value b"ferro:" + key, and checks every one is a hit with that value.
For each key it wrote it prints "placed KEY INDEX" with pylibmc's own idea of the
server (Client.hash(): libmemcached's memcached_generate_hash()).

Prints one line per failed check and a closing `pylibmc_ketama: N passed, M failed`
line; exits 1 on any failure, 77 when pylibmc is not installed.
"""
import sys

try:
    import pylibmc
except ImportError:
    print("pylibmc: module not installed")
    sys.exit(77)


def main():
    servers = [s for s in sys.argv[1].split(",") if s]
    prefix = sys.argv[2]
    n = int(sys.argv[3])
    mc = pylibmc.Client(servers, binary=False, behaviors={"ketama_weighted": True})
    passed = 0
    failed = 0

    for i in range(n):
        key = "%s:py:%05d" % (prefix, i)
        ok = mc.set(key, b"pylibmc:" + key.encode())
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL set %s returned %r" % (key, ok))
        print("placed %s %d" % (key, mc.hash(key)))

    want = ["%s:rs:%05d" % (prefix, i) for i in range(n)]
    got = {}
    for start in range(0, n, 100):
        got.update(mc.get_multi(want[start:start + 100]))
    hits = 0
    for key in want:
        value = got.get(key)
        if value == b"ferro:" + key.encode():
            hits += 1
            passed += 1
        else:
            failed += 1
            print("FAIL get %s: got %r" % (key, value))
    print("pylibmc read %d/%d keys written by the other client" % (hits, n))
    print("pylibmc_ketama: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
