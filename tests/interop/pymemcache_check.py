#!/usr/bin/python3
"""Round-trips the text protocol through pymemcache against HOST PORT.

Prints one line per failed check and a closing `pymemcache: N passed, M failed`
line; exits 1 on any failure, 77 when pymemcache is not installed.
"""
import os
import sys

try:
    from pymemcache.client.base import Client
except ImportError:
    print("pymemcache: module not installed")
    sys.exit(77)

passed = 0
failed = 0


def check(name, got, want):
    """Counts a check; prints the difference when it fails."""
    global passed, failed
    if got == want:
        passed += 1
    else:
        failed += 1
        shown_got = got if not isinstance(got, bytes) or len(got) < 200 else got[:60] + b"..."
        shown_want = want if not isinstance(want, bytes) or len(want) < 200 else want[:60] + b"..."
        print(f"FAIL {name}: got {shown_got!r}, want {shown_want!r}")


def step(name, fn):
    """Runs one group of checks; an exception counts as a failure."""
    global failed
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every error as a failed check
        failed += 1
        print(f"FAIL {name}: exception {type(e).__name__}: {e}")


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    prefix = "pym%d_" % os.getpid()
    c = Client((host, port), default_noreply=False, connect_timeout=5, timeout=10)
    k = lambda s: prefix + s  # noqa: E731

    odd = bytes(range(256)) + "é€😀".encode("utf-8") + b"\r\nEND\r\n\x00"
    big = bytes((i * 7 + 3) % 251 for i in range(500 * 1024))

    def basic():
        check("set", c.set(k("a"), b"alpha"), True)
        check("get", c.get(k("a")), b"alpha")
        check("get miss", c.get(k("missing")), None)
        check("set odd", c.set(k("odd"), odd), True)
        check("get odd", c.get(k("odd")), odd)
        check("set big", c.set(k("big"), big), True)
        check("get big", c.get(k("big")), big)

    def multi():
        c.set(k("m1"), b"one")
        c.set(k("m2"), b"two")
        got = c.get_many([k("m1"), k("m2"), k("nope"), k("odd")])
        check("get_many", got, {k("m1"): b"one", k("m2"): b"two", k("odd"): odd})

    def counters():
        check("set counter", c.set(k("n"), b"10"), True)
        check("incr", c.incr(k("n"), 5), 15)
        check("decr", c.decr(k("n"), 3), 12)
        check("decr floor", c.decr(k("n"), 100), 0)
        check("incr miss", c.incr(k("nocounter"), 1), None)
        check("incr big", c.incr(k("n"), 18446744073709551615), 18446744073709551615)
        check("incr wrap", c.incr(k("n"), 2), 1)

    def cas():
        c.set(k("c"), b"v1")
        value, token = c.gets(k("c"))
        check("gets value", value, b"v1")
        check("cas win", c.cas(k("c"), b"v2", token), True)
        check("cas lose", c.cas(k("c"), b"v3", token), False)
        check("after cas", c.get(k("c")), b"v2")
        check("cas missing", c.cas(k("nocas"), b"x", token), None)
        value2, token2 = c.gets(k("c"))
        check("gets new token", value2 == b"v2" and token2 != token, True)

    def touch_delete():
        check("touch hit", c.touch(k("a"), 100), True)
        check("touch miss", c.touch(k("nothere"), 100), False)
        check("delete hit", c.delete(k("a")), True)
        check("delete miss", c.delete(k("a")), False)
        check("get deleted", c.get(k("a")), None)

    def add_replace():
        check("add new", c.add(k("r"), b"first"), True)
        check("add existing", c.add(k("r"), b"second"), False)
        check("replace existing", c.replace(k("r"), b"third"), True)
        check("replace missing", c.replace(k("rnone"), b"x"), False)
        check("after replace", c.get(k("r")), b"third")

    def append_prepend():
        c.set(k("p"), b"mid")
        check("append", c.append(k("p"), b"\xff>"), True)
        check("prepend", c.prepend(k("p"), b"<\x00"), True)
        check("after append/prepend", c.get(k("p")), b"<\x00mid\xff>")
        check("append missing", c.append(k("pnone"), b"x"), False)
        check("prepend missing", c.prepend(k("pnone"), b"x"), False)

    for name, fn in [
        ("basic", basic),
        ("multi", multi),
        ("counters", counters),
        ("cas", cas),
        ("touch/delete", touch_delete),
        ("add/replace", add_replace),
        ("append/prepend", append_prepend),
    ]:
        step(name, fn)
    c.close()
    print(f"pymemcache: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
