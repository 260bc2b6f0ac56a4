#!/usr/bin/python3
"""Records byte-exact text-protocol transcripts from the reference memcached.

Run from the repository root:

    /usr/bin/python3 tests/tools/record_transcripts.py [--memcached /usr/bin/memcached] [FAMILY...]

Every case below is a list of steps. Each case gets its own memcached process on
127.0.0.1 with a random port (so CAS counters start fresh), each step's bytes are sent
in one write, and whatever the server answers until the connection has been quiet for
a while is recorded. The result goes to tests/data/transcripts/<family>.txt, which
tests/suite/text_transcripts.rs replays against ferrocache (and against memcached, so a
stale golden fails).

Golden file format (one file per command family):

    # comment
    == case-name
    args -I 2k -o slab_chunk_max=1024     server arguments (optional)
    tag cas-shape                         compare digit runs as a pattern (optional)
    > set a 0 0 1\\r\\n                     request bytes (consecutive lines = one write)
    > x\\r\\n
    < STORED\\r\\n                          expected reply bytes (consecutive lines joined)
    <                                     a lone '<' means "no reply at all"
    closed                                the server closes the connection here
    sleep 2                               wait 2 s (ferrocache replay: `debugtime 2`)
    reconnect                             open a new connection

Escapes inside '>' and '<' lines: \\r \\n \\t \\0 \\\\ \\xHH, and \\{c*N} for the
character c repeated N times (long values stay readable).
"""

import os
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

MEMCACHED = "/usr/bin/memcached"
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "transcripts")
QUIET = 0.25  # seconds of silence that end a reply
FIRST = 0.6  # seconds to wait for the first byte of a reply

SLEEP = object()
RECONNECT = object()


class Case:
    def __init__(self, name, steps, args=(), tags=()):
        self.name = name
        self.steps = steps
        self.args = list(args)
        self.tags = list(tags)


FAMILIES = {}


def case(family, name, steps, args=(), tags=()):
    FAMILIES.setdefault(family, []).append(Case(name, steps, args, tags))


def b(s):
    return s.encode("latin-1") if isinstance(s, str) else s


def sleep(n):
    return (SLEEP, n)


def store(cmd, key, flags, exp, data, extra=""):
    data = b(data)
    line = "%s %s %s %s %d%s\r\n" % (cmd, key, flags, exp, len(data), extra)
    return b(line) + data + b"\r\n"


SMALL_I = ["-I", "2k", "-o", "slab_chunk_max=1024"]
K250 = "k" * 250
K251 = "k" * 251

# ---------------------------------------------------------------------------
# storage: set add replace append prepend cas
# ---------------------------------------------------------------------------
F = "storage"
case(F, "set-get", [store("set", "a", 0, 0, "hello"), b"get a\r\n"])
case(F, "set-empty-value", [store("set", "a", 0, 0, ""), b"get a\r\n"])
case(F, "set-overwrite", [store("set", "a", 1, 0, "one"), store("set", "a", 2, 0, "two"), b"get a\r\n"])
case(F, "set-noreply", [store("set", "a", 0, 0, "v", " noreply"), b"get a\r\n"])
case(F, "set-noreply-error-still-replies", [b"set a 0 0 x noreply\r\n", b"get a\r\n"])
case(F, "set-binary-value", [store("set", "a", 0, 0, b"\x00\x01\r\n\xff"), b"get a\r\n"])
for fl in ["0", "4294967295", "4294967296", "-1", "abc", "1x", "00012", "+5"]:
    case(F, "set-flags-" + fl, [b("set a %s 0 1\r\nx\r\n" % fl), b"get a\r\n"])
for exp in ["-1", "-1000000", "abc", "0x10", "+5", "9999999999999999999999"]:
    case(F, "set-exptime-" + exp, [b("set a 0 %s 1\r\nx\r\n" % exp), b"get a\r\n"])
case(F, "set-exptime-then-sleep", [store("set", "a", 0, 1, "x"), b"get a\r\n", sleep(2), b"get a\r\n"])
for ln in ["-1", "abc", "1x", "4294967296", "2147483647", "+1"]:
    case(F, "set-length-" + ln, [b("set a 0 0 %s\r\n" % ln), b"get a\r\n"])
case(F, "set-missing-fields", [b"set a 0 0\r\n", b"set a 0\r\n", b"set a\r\n", b"set\r\n"])
case(F, "set-extra-token", [b"set a 0 0 1 foo\r\nx\r\n", b"get a\r\n"])
case(F, "set-too-many-tokens", [b"set a 0 0 1 noreply x y z\r\nx\r\n", b"get a\r\n"])
case(F, "set-bad-data-chunk-long", [b"set a 0 0 1\r\nxy\r\n", b"get a\r\n"])
case(F, "set-bad-data-chunk-no-crlf", [b"set a 0 0 2\r\nxyzw", b"\r\n", b"get a\r\n"])
case(F, "set-bad-data-chunk-lf-only", [b"set a 0 0 1\r\nx\n", b"get a\r\n"])
case(F, "set-bad-data-chunk-keeps-old", [store("set", "a", 0, 0, "old"), b"set a 0 0 1\r\nxy\r\n", b"get a\r\n"])
case(F, "set-data-split-writes", [b"set a 0 0 5\r\nhe", b"llo", b"\r\n", b"get a\r\n"])
case(F, "set-key-250", [store("set", K250, 0, 0, "v"), b("get %s\r\n" % K250)])
case(F, "set-key-251", [store("set", K251, 0, 0, "v"), b("get %s\r\n" % K251)])
case(F, "set-key-251-noreply", [store("set", K251, 0, 0, "v", " noreply"), b"get a\r\n"])
case(F, "add", [store("add", "a", 0, 0, "1"), store("add", "a", 0, 0, "2"), b"get a\r\n"])
case(F, "add-noreply", [store("add", "a", 0, 0, "1", " noreply"), store("add", "a", 0, 0, "2", " noreply"), b"get a\r\n"])
case(F, "add-over-expired", [store("set", "a", 0, -1, "1"), store("add", "a", 0, 0, "2"), b"get a\r\n"])
case(F, "replace", [store("replace", "a", 0, 0, "1"), store("set", "a", 0, 0, "x"), store("replace", "a", 5, 0, "2"), b"get a\r\n"])
case(F, "replace-noreply", [store("replace", "a", 0, 0, "1", " noreply"), b"get a\r\n"])
case(F, "append-prepend", [store("set", "a", 7, 0, "mid"), store("append", "a", 9, 0, "_end"), store("prepend", "a", 9, 0, "start_"), b"gets a\r\n"])
case(F, "append-missing", [store("append", "a", 0, 0, "x"), store("prepend", "a", 0, 0, "x"), b"get a\r\n"])
case(F, "append-noreply", [store("set", "a", 0, 0, "a"), store("append", "a", 0, 0, "b", " noreply"), store("prepend", "a", 0, 0, "c", " noreply"), b"get a\r\n"])
case(F, "append-bad-chunk", [store("set", "a", 0, 0, "a"), b"append a 0 0 1\r\nbc\r\n", b"get a\r\n"])
case(F, "gets-cas-values", [store("set", "a", 0, 0, "1"), store("set", "b", 0, 0, "2"), store("set", "a", 0, 0, "3"), b"gets a b\r\n"])
case(F, "cas-stored-exists-notfound", [
    store("set", "a", 0, 0, "1"), b"gets a\r\n",
    store("cas", "a", 0, 0, "2", " 1"), store("cas", "a", 0, 0, "3", " 1"),
    store("cas", "zz", 0, 0, "4", " 1"), b"gets a\r\n"])
case(F, "cas-noreply", [store("set", "a", 0, 0, "1"), store("cas", "a", 0, 0, "2", " 1 noreply"), store("cas", "a", 0, 0, "3", " 1 noreply"), b"gets a\r\n"])
case(F, "cas-bad-unique", [store("set", "a", 0, 0, "1"), b"cas a 0 0 1 x\r\n2\r\n", b"cas a 0 0 1 -1\r\n2\r\n", b"cas a 0 0 1\r\n2\r\n", b"get a\r\n"])
case(F, "cas-unique-max", [store("set", "a", 0, 0, "1"), b"cas a 0 0 1 18446744073709551615\r\n2\r\n", b"cas a 0 0 1 18446744073709551616\r\n2\r\n", b"get a\r\n"])
case(F, "cas-disabled", [store("set", "a", 0, 0, "1"), b"gets a\r\n", store("cas", "a", 0, 0, "2", " 0"), store("cas", "a", 0, 0, "3", " 1"), b"gets a\r\n"], args=["-C"])
case(F, "cas-after-append-incr-touch", [
    store("set", "a", 0, 0, "1"), store("append", "a", 0, 0, "2"), b"gets a\r\n",
    b"incr a 1\r\n", b"gets a\r\n", b"touch a 100\r\n", b"gets a\r\n"])
case(F, "cas-after-failed-stores", [
    store("set", "a", 0, 0, "1"), store("add", "a", 0, 0, "2"), store("replace", "b", 0, 0, "3"),
    b"incr a x\r\n", store("set", "b", 0, 0, "4"), b"gets a b\r\n"])
case(F, "too-large-default", [
    store("set", "k", 0, 0, "old"),
    store("set", "k", 0, 0, "x" * 1048517), b"get k\r\n",
    store("set", "k", 0, 0, "x" * 1048516), b"get k\r\n"])
case(F, "too-large-default-nocas", [store("set", "k", 0, 0, "x" * 1048525), store("set", "k", 0, 0, "x" * 1048524), b"delete k\r\n"], args=["-C"])
case(F, "too-large-huge-length", [store("set", "k", 0, 0, "old"), b"set k 0 0 2000000\r\n" + b"y" * 2000000 + b"\r\n", b"get k\r\n"])
SMALL = [
    ("set", "k", 1988), ("set", "k", 1989), ("set", "key", 1986), ("set", "key", 1987),
]
for cmd, key, n in SMALL:
    case(F, "small-I-%s-%s-%d" % (cmd, key, n), [store("set", key, 0, 0, "old"), store(cmd, key, 0, 0, "x" * n), b("get %s\r\n" % key)], args=SMALL_I)
case(F, "small-I-nocas-boundary", [store("set", "k", 0, 0, "x" * 1996), store("set", "k", 0, 0, "x" * 1997), b"get k\r\n"], args=SMALL_I + ["-C"])
for cmd in ["add", "replace", "append", "prepend", "cas"]:
    extra = " 1" if cmd == "cas" else ""
    case(F, "small-I-too-large-%s" % cmd, [store("set", "k", 0, 0, "old"), store(cmd, "k", 0, 0, "x" * 1989, extra), b"get k\r\n"], args=SMALL_I)
case(F, "small-I-too-large-noreply", [store("set", "k", 0, 0, "old"), store("set", "k", 0, 0, "x" * 3000, " noreply"), b"get k\r\n"], args=SMALL_I)
case(F, "small-I-append-grows-too-large", [store("set", "k", 0, 0, "x" * 1500), store("append", "k", 0, 0, "y" * 600), b"get k\r\n"], args=SMALL_I)
case(F, "small-I-too-large-split", [store("set", "k", 0, 0, "old"), b"set k 0 0 5000\r\n" + b"z" * 2000, b"z" * 3000 + b"\r\n", b"get k\r\n"], args=SMALL_I)

# ---------------------------------------------------------------------------
# retrieval: get gets gat gats
# ---------------------------------------------------------------------------
F = "retrieval"
case(F, "get-miss", [b"get nope\r\n", b"gets nope\r\n"])
case(F, "get-no-key", [b"get\r\n", b"gets\r\n", b"get \r\n"])
case(F, "get-multi", [store("set", "a", 1, 0, "A"), store("set", "c", 3, 0, "CC"), b"get a b c a\r\n", b"gets a b c\r\n"])
case(F, "get-extra-spaces", [store("set", "a", 0, 0, "A"), b"get   a    a  \r\n"])
keys100 = ["key%d" % i for i in range(100)]
case(F, "get-100-keys", [b"".join(store("set", k, i, 0, "v%d" % i, " noreply") for i, k in enumerate(keys100[::2])),
                         b("get %s\r\n" % " ".join(keys100)), b("gets %s\r\n" % " ".join(keys100[:50]))])
case(F, "get-key-250-251", [store("set", K250, 0, 0, "v"), b("get %s\r\n" % K250), b("get a %s\r\n" % K251), b("get %s a\r\n" % K250)])
case(F, "get-key-251-after-hit", [store("set", "a", 0, 0, "v"), b("get a %s a\r\n" % K251)])
case(F, "gat", [store("set", "a", 5, 0, "v"), b"gat 100 a b\r\n", b"gats 0 a\r\n", b"gat -1 a\r\n", b"get a\r\n"])
case(F, "gat-bad", [store("set", "a", 0, 0, "v"), b"gat a\r\n", b"gat\r\n", b"gat x a\r\n", b"gats 10\r\n"])
case(F, "gat-expires", [store("set", "a", 0, 0, "v"), b"gat 1 a\r\n", sleep(2), b"get a\r\n"])
case(F, "gats-cas", [store("set", "a", 0, 0, "v"), b"gats 100 a\r\n", b"gets a\r\n"])
case(F, "get-expired", [store("set", "a", 0, 1, "v"), sleep(2), b"get a\r\n", store("add", "a", 0, 0, "n"), b"get a\r\n"])

# ---------------------------------------------------------------------------
# touch, delete
# ---------------------------------------------------------------------------
F = "touch_delete"
case(F, "touch", [store("set", "a", 0, 0, "v"), b"touch a 10\r\n", b"touch b 10\r\n", b"touch a 10 noreply\r\n", b"get a\r\n"])
case(F, "touch-bad", [b"touch a\r\n", b"touch a x\r\n", b"touch\r\n", b"touch a 1 2 3\r\n"])
case(F, "touch-negative", [store("set", "a", 0, 0, "v"), b"touch a -1\r\n", b"get a\r\n"])
case(F, "touch-expire", [store("set", "a", 0, 0, "v"), b"touch a 1\r\n", sleep(2), b"get a\r\n"])
case(F, "touch-extends", [store("set", "a", 0, 1, "v"), b"touch a 100\r\n", sleep(2), b"get a\r\n"])
case(F, "delete", [store("set", "a", 0, 0, "v"), b"delete a\r\n", b"delete a\r\n", b"get a\r\n"])
case(F, "delete-noreply", [store("set", "a", 0, 0, "v"), b"delete a noreply\r\n", b"delete a noreply\r\n", b"get a\r\n"])
case(F, "delete-time-arg", [store("set", "a", 0, 0, "v"), store("set", "b", 0, 0, "v"),
                            b"delete a 0\r\n", b"delete b 1\r\n", b"delete b 0 noreply\r\n", b"delete b x\r\n", b"get a b\r\n"])
case(F, "delete-bad", [b"delete\r\n", b("delete %s\r\n" % K251), b"delete a 0 noreply extra\r\n"])

# ---------------------------------------------------------------------------
# incr decr
# ---------------------------------------------------------------------------
F = "arith"
case(F, "incr-decr", [store("set", "n", 5, 0, "10"), b"incr n 5\r\n", b"decr n 3\r\n", b"get n\r\n"])
case(F, "incr-missing", [b"incr n 1\r\n", b"decr n 1\r\n", b"incr n 1 noreply\r\n"])
case(F, "incr-wrap", [store("set", "n", 0, 0, "18446744073709551614"), b"incr n 1\r\n", b"incr n 1\r\n", b"get n\r\n", b"incr n 5\r\n"])
case(F, "incr-big-delta", [store("set", "n", 0, 0, "1"), b"incr n 18446744073709551615\r\n", b"incr n 18446744073709551616\r\n", b"get n\r\n"])
case(F, "decr-floor", [store("set", "n", 0, 0, "5"), b"decr n 10\r\n", b"decr n 1\r\n", b"get n\r\n"])
case(F, "decr-shrinks-length", [store("set", "n", 0, 0, "100"), b"decr n 1\r\n", b"get n\r\n", b"decr n 90\r\n", b"get n\r\n", b"incr n 1000\r\n", b"get n\r\n"])
case(F, "decr-shrink-then-append", [store("set", "n", 0, 0, "1000"), b"decr n 999\r\n", store("append", "n", 0, 0, "x"), b"get n\r\n"])
case(F, "incr-grows-length", [store("set", "n", 0, 0, "99"), b"incr n 1\r\n", b"get n\r\n"])
case(F, "incr-non-numeric", [store("set", "n", 0, 0, "abc"), b"incr n 1\r\n", b"decr n 1\r\n", store("set", "m", 0, 0, "12a"), b"incr m 1\r\n", store("set", "e", 0, 0, ""), b"incr e 1\r\n"])
case(F, "incr-value-too-big", [store("set", "n", 0, 0, "18446744073709551616"), b"incr n 1\r\n", store("set", "m", 0, 0, "-5"), b"incr m 1\r\n"])
case(F, "incr-value-spaces", [store("set", "n", 0, 0, " 5"), b"incr n 1\r\n", store("set", "m", 0, 0, "5 "), b"incr m 1\r\n", store("set", "z", 0, 0, "007"), b"incr z 1\r\n", b"get z\r\n"])
case(F, "incr-bad-delta", [store("set", "n", 0, 0, "1"), b"incr n x\r\n", b"incr n -1\r\n", b"decr n 1.5\r\n", b"incr n\r\n", b"incr\r\n", b"incr n 1 2 3\r\n", b"get n\r\n"])
case(F, "incr-noreply", [store("set", "n", 0, 0, "1"), b"incr n 5 noreply\r\n", b"decr n 2 noreply\r\n", b"incr n x noreply\r\n", b"get n\r\n"])
case(F, "incr-keeps-flags", [store("set", "n", 42, 0, "1"), b"incr n 1\r\n", b"gets n\r\n"])
case(F, "incr-key-251", [b("incr %s 1\r\n" % K251)])

# ---------------------------------------------------------------------------
# flush_all
# ---------------------------------------------------------------------------
F = "flush"
case(F, "flush-all", [store("set", "a", 0, 0, "v"), b"flush_all\r\n", b"get a\r\n", store("set", "a", 0, 0, "w"), b"get a\r\n"])
case(F, "flush-all-noreply", [store("set", "a", 0, 0, "v"), b"flush_all noreply\r\n", b"get a\r\n"])
case(F, "flush-all-zero", [store("set", "a", 0, 0, "v"), b"flush_all 0\r\n", b"get a\r\n", b"flush_all 0 noreply\r\n"])
case(F, "flush-all-delay", [store("set", "a", 0, 0, "v"), b"flush_all 2\r\n", b"get a\r\n", sleep(3), b"get a\r\n"])
case(F, "flush-all-bad", [store("set", "a", 0, 0, "v"), b"flush_all x\r\n", b"flush_all -1\r\n", b"flush_all 1 2\r\n", b"flush_all noreply x\r\n", b"get a\r\n"])
case(F, "flush-all-disabled", [store("set", "a", 0, 0, "v"), b"flush_all\r\n", b"flush_all noreply\r\n", b"flush_all 0\r\n", b"get a\r\n"], args=["-F"])

# ---------------------------------------------------------------------------
# misc: version verbosity quit shutdown cache_memlimit, framing
# ---------------------------------------------------------------------------
F = "misc"
case(F, "version", [b"version\r\n", b"version x\r\n", b"VERSION\r\n"])
case(F, "verbosity", [b"verbosity\r\n", b"verbosity 1\r\n", b"verbosity 0 noreply\r\n", b"verbosity x\r\n",
                      b"verbosity 1 2\r\n", b"verbosity noreply\r\n", b"verbosity 5\r\n", b"verbosity 0\r\n"])
case(F, "quit", [store("set", "a", 0, 0, "v"), b"quit\r\n", RECONNECT, b"get a\r\n"])
case(F, "quit-pipelined", [b"get a\r\nquit\r\nget a\r\n"])
case(F, "quit-extra-token", [b"quit now\r\n"])
case(F, "shutdown-disabled", [b"shutdown\r\n", b"shutdown graceful\r\n", b"shutdown x\r\n", b"version\r\n"])
case(F, "shutdown-enabled", [b"shutdown\r\n"], args=["-A"])
case(F, "shutdown-graceful", [b"shutdown graceful\r\n"], args=["-A"])
case(F, "shutdown-bad-arg", [b"shutdown now\r\n", b"version\r\n"], args=["-A"])
case(F, "cache-memlimit", [b"cache_memlimit 100\r\n", b"cache_memlimit 0\r\n", b"cache_memlimit 1\r\n", b"cache_memlimit 8\r\n",
                           b"cache_memlimit 9 noreply\r\n", b"cache_memlimit x\r\n", b"cache_memlimit -1\r\n", b"cache_memlimit\r\n",
                           b"cache_memlimit 4294967296\r\n", b"cache_memlimit 100000000\r\n"])
case(F, "unknown-command", [b"foo\r\n", b"foo bar baz\r\n", b"gett a\r\n", b"sets a 0 0 1\r\n"])
case(F, "uppercase", [b"GET a\r\n", b"SET a 0 0 1\r\n", b"x\r\n", b"Delete a\r\n"])
case(F, "empty-line", [b"\r\n", b"\n", b"   \r\n", b"version\r\n"])
case(F, "bare-lf", [b"set a 0 0 1\nx\r\n", b"get a\n", b"version\n", b"delete a\n"])
case(F, "cr-in-line", [b"get a\rb\r\n", b"version\r\r\n"])
case(F, "pipelined", [store("set", "a", 0, 0, "1") + b"get a\r\nincr a 1\r\ndelete a\r\nget a\r\n"])
case(F, "tab-separator", [store("set", "a", 0, 0, "1"), b"get\ta\r\n"])
case(F, "line-2047", [b"get " + b"k " * 1021 + b"\r\n"])
case(F, "long-get-line", [store("set", "a", 0, 0, "1"), b"get a " + b"b " * 3000 + b"\r\n"])
case(F, "long-line-no-newline", [b"x" * 2048, b"version\r\n"])
case(F, "long-line-no-newline-4k", [b"x" * 4096])
case(F, "long-line-2049-no-newline", [b"x" * 2049])
case(F, "long-get-20k-no-newline", [b"get " + b"a " * 10000, b"\r\n"])
case(F, "long-get-leading-spaces-50", [b" " * 50 + b"get " + b"a " * 1200, b"\r\n"])
case(F, "long-get-leading-spaces-150", [b" " * 150 + b"get " + b"a " * 1200])
case(F, "only-spaces-3000", [b" " * 3000])
case(F, "only-spaces-line", [b" " * 1000 + b"\r\n", b"version\r\n"])
case(F, "long-line-with-newline", [b"y" * 3000 + b"\r\n", b"version\r\n"])
case(F, "long-set-line", [b"set " + b"a" * 3000 + b" 0 0 1\r\nx\r\n", b"version\r\n"])
case(F, "long-get-no-newline", [b"get " + b"a " * 1500, b"\r\n"])
case(F, "http-get", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
case(F, "http-first-line-only", [b"GET /index.html HTTP/1.0\r\n"])
case(F, "http-later-line", [b"version\r\n", b"GET / HTTP/1.1\r\n"])
case(F, "stats-noreply", [b"stats noreply\r\n", b"version\r\n"])
case(F, "stats-bad-group", [b"stats nosuchgroup\r\n", b"stats detail\r\n", b"stats detail x\r\n", b"stats cachedump\r\n", b"stats cachedump x y\r\n"])
case(F, "stats-reset", [b"stats reset\r\n", b"stats reset x\r\n"])
case(F, "stats-detail", [b"stats detail on\r\n", store("set", "a:b", 0, 0, "v"), b"get a:b\r\n", b"stats detail dump\r\n", b"stats detail off\r\n"])


# ---------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------

def free_port():
    for _ in range(100):
        p = random.randint(30000, 59000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            s.close()
            return p
        except OSError:
            s.close()
    raise RuntimeError("no free port")


def connect(port):
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("server did not come up")


def read_reply(s):
    """Bytes until quiet; (bytes, closed)."""
    out = b""
    s.settimeout(FIRST)
    while True:
        try:
            d = s.recv(1 << 20)
        except socket.timeout:
            return out, False
        except OSError:
            return out, True
        if not d:
            return out, True
        out += d
        s.settimeout(QUIET)


def record(c):
    port = free_port()
    args = [MEMCACHED, "-l", "127.0.0.1", "-p", str(port), "-U", "0"]
    if os.geteuid() == 0:
        args += ["-u", "nobody"]
    proc = subprocess.Popen(args + c.args, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s = connect(port)
        results = []
        for st in c.steps:
            if isinstance(st, tuple) and st[0] is SLEEP:
                time.sleep(st[1])
                results.append(("sleep", st[1]))
                continue
            if st is RECONNECT:
                s.close()
                s = connect(port)
                results.append(("reconnect",))
                continue
            if st == b"":
                continue
            try:
                s.sendall(st)
            except OSError:
                results.append(("send", st, b"", True))
                break
            rep, closed = read_reply(s)
            results.append(("send", st, rep, closed))
            if closed:
                break
        s.close()
        return results
    finally:
        proc.kill()
        proc.wait()


def esc(data):
    out = []
    i = 0
    n = len(data)
    while i < n:
        ch = data[i]
        j = i
        while j < n and data[j] == ch:
            j += 1
        run = j - i
        if run >= 16 and 0x20 <= ch < 0x7F and ch not in b"\\{}*":
            out.append("\\{%s*%d}" % (chr(ch), run))
            i = j
            continue
        if ch == 0x0D:
            out.append("\\r")
        elif ch == 0x0A:
            out.append("\\n")
        elif ch == 0x09:
            out.append("\\t")
        elif ch == 0x00:
            out.append("\\0")
        elif ch == 0x5C:
            out.append("\\\\")
        elif 0x20 <= ch < 0x7F:
            out.append(chr(ch))
        else:
            out.append("\\x%02x" % ch)
        i += 1
    text = "".join(out)
    if text.endswith(" "):
        text = text[:-1] + "\\x20"  # keep trailing spaces visible and editor-proof
    return text


def lines_of(data):
    """Splits at each \\n (kept), for one golden line per protocol line."""
    parts = []
    start = 0
    for i, ch in enumerate(data):
        if ch == 0x0A:
            parts.append(data[start:i + 1])
            start = i + 1
    if start < len(data):
        parts.append(data[start:])
    return parts


def render(c, results):
    out = ["== " + c.name]
    if c.args:
        out.append("args " + " ".join(c.args))
    for t in c.tags:
        out.append("tag " + t)
    for r in results:
        if r[0] == "sleep":
            out.append("sleep %d" % r[1])
        elif r[0] == "reconnect":
            out.append("reconnect")
        else:
            _, sent, rep, closed = r
            for p in lines_of(sent):
                out.append("> " + esc(p))
            parts = lines_of(rep)
            if not parts and not closed:
                out.append("<")
            for p in parts:
                out.append("< " + esc(p))
            if closed:
                out.append("closed")
    return "\n".join(out) + "\n"


def main():
    global MEMCACHED
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "--memcached":
        MEMCACHED = argv[1]
        argv = argv[2:]
    families = argv or sorted(FAMILIES)
    version = subprocess.run([MEMCACHED, "-V"], capture_output=True, text=True).stdout.strip()
    os.makedirs(OUT_DIR, exist_ok=True)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for fam in families:
            cases = FAMILIES[fam]
            names = [c.name for c in cases]
            assert len(set(names)) == len(names), "duplicate case names in " + fam
            results = list(pool.map(record, cases))
            text = "# %s: recorded from %s by tests/tools/record_transcripts.py.\n" % (fam, version)
            text += "# Re-record instead of editing; format described in that script.\n\n"
            text += "\n".join(render(c, r) for c, r in zip(cases, results))
            path = os.path.join(OUT_DIR, fam + ".txt")
            with open(path, "w") as f:
                f.write(text)
            print("%s: %d cases -> %s" % (fam, len(cases), os.path.relpath(path)))


if __name__ == "__main__":
    main()
