#!/usr/bin/python3
"""Writes the raw seed candidates of the fuzz targets into a directory per target.

    /usr/bin/python3 fuzz/tools/make_seeds.py OUT_DIR

OUT_DIR/text, OUT_DIR/binary, OUT_DIR/auth, OUT_DIR/snapshot and OUT_DIR/cluster get
one file per candidate:

- text:   the request bytes of every case of tests/data/transcripts/*.txt (all '>'
          lines of a case, concatenated; `args -I`/`-C` picked up), the string literals
          holding "\\r\\n" in the text-protocol tests, some split variants;
- binary: packets built here (every opcode, quiet pipelines, too large, SASL);
- auth:   the -Y framing strings of tests/suite/ascii_auth.rs, -Y and SASL credential
          files, PLAIN/SCRAM messages, and valid-client configurations;
- snapshot: snapshot files in the format of src/store/snapshot.rs (items, CAS values
          at the 48-bit edge, an end block's counts, expiries), sealed and not;
- cluster: configuration payloads and files (versions at the followable limit and
          beyond, IPv6, shorthand entries, many nodes), several per input.

Every file starts with the header byte(s) the targets expect (see fuzz/src/lib.rs and
the target sources). fuzz/run.sh does not need this script: the committed seeds in
fuzz/seeds/ are the coverage-minimized subset of these candidates, chosen with
`fuzz/tools/select_seeds.sh`.
"""

import hashlib
import os
import re
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
ITEM_SIZES = {"1m": 0, "1024": 1, "1k": 1, "2k": 2, "2048": 2, "16k": 3}


MAX_SEED = 32 * 1024  # larger candidates (multi-megabyte values) are left out


def out(base, target, name, data):
    if len(data) > MAX_SEED:
        return
    d = os.path.join(base, target)
    os.makedirs(d, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    h = hashlib.sha1(data).hexdigest()[:8]
    with open(os.path.join(d, f"{name}-{h}"), "wb") as f:
        f.write(data)


def header(opts, chunks=()):
    """Byte 0 (options in the high nibble, chunk count in the low) + chunk sizes."""
    assert len(chunks) < 16
    return bytes([(opts << 4) | len(chunks)]) + bytes(c - 1 for c in chunks)


# ------------------------------------------------------------------ text


def unescape_golden(s):
    out_ = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out_ += c.encode()
            i += 1
            continue
        n = s[i + 1]
        if n in "rnt0\\":
            out_ += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}[n]
            i += 2
        elif n == "x":
            out_.append(int(s[i + 2 : i + 4], 16))
            i += 4
        elif n == "{":
            close = s.index("}", i)
            ch, cnt = s[i + 2 : close].split("*")
            out_ += ch.encode() * int(cnt)
            i = close + 1
        else:
            raise ValueError(s)
    return bytes(out_)


def transcripts():
    d = os.path.join(ROOT, "tests", "data", "transcripts")
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".txt"):
            continue
        family = fn[:-4]
        case = None
        for raw in open(os.path.join(d, fn), encoding="utf-8").read().splitlines():
            if raw.startswith("== "):
                if case:
                    yield case
                case = {"name": f"{family}-{raw[3:]}", "args": [], "send": b""}
            elif case is None or not raw or raw.startswith("#"):
                continue
            elif raw.startswith("args "):
                case["args"] = raw[5:].split()
            elif raw.startswith("> "):
                case["send"] += unescape_golden(raw[2:])
        if case:
            yield case


def text_opts(args):
    cas = 0 if "-C" in args else 1
    size = 0
    for i, a in enumerate(args):
        if a == "-I" and i + 1 < len(args):
            size = ITEM_SIZES.get(args[i + 1].lower(), 0)
    return cas | (size << 1)


RUST_STR = re.compile(r'b?"((?:[^"\\]|\\.|\\\n)*)"', re.S)


def unescape_rust(s):
    out_ = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out_ += c.encode()
            i += 1
            continue
        n = s[i + 1]
        if n == "\n":  # line continuation: skip the newline and leading spaces
            i += 2
            while i < len(s) and s[i] in " \t":
                i += 1
        elif n in 'rnt0\\"\'':
            out_ += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\",
                     '"': b'"', "'": b"'"}[n]
            i += 2
        elif n == "x":
            out_.append(int(s[i + 2 : i + 4], 16))
            i += 4
        elif n == "u":
            close = s.index("}", i)
            out_ += chr(int(s[i + 3 : close], 16)).encode()
            i = close + 1
        else:
            raise ValueError(repr(s[i : i + 4]))
    return bytes(out_)


def rust_literals(path):
    text = open(path, encoding="utf-8").read()
    for m in RUST_STR.finditer(text):
        body = m.group(1)
        if "\\r\\n" not in body and "\\n" not in body:
            continue
        try:
            yield unescape_rust(body)
        except (ValueError, IndexError):
            continue


def groups(items, n):
    for i in range(0, len(items), n):
        yield i // n, items[i : i + n]


def text_seeds(base):
    # Transcript cases, five to a seed (with the -I/-C of the group's first case);
    # the first group of each family is also written read in small pieces.
    by_family = {}
    for case in transcripts():
        if case["send"]:
            by_family.setdefault(case["name"].split("-")[0], []).append(case)
    for family, cases in by_family.items():
        for g, group in groups(cases, 5):
            opts = text_opts(group[0]["args"])
            send = b"".join(c["send"] for c in group)
            name = f"{family}-{g}-{group[0]['name'][len(family) + 1:]}"
            out(base, "text", name, header(opts) + send)
            if g == 0:
                out(base, "text", name + "-split", header(opts, (1, 3, 7)) + send)
    # Request literals of the text-protocol tests, eight to a seed.
    for t in ["meta_protocol", "malformed", "pipelining", "expiry", "lifecycle"]:
        path = os.path.join(ROOT, "tests", t + ".rs")
        lits = [lit for lit in rust_literals(path) if not lit.startswith(b"\x80")]
        for g, group in groups(lits, 8):
            out(base, "text", f"{t}-{g}", header(1) + b"".join(group))
    # -I 1k "too large" block that is swallowed across reads, and meta forms of it.
    big = b"set k 0 0 2000\r\n" + b"v" * 2000 + b"\r\nget k\r\n"
    out(base, "text", "too-large-swallowed", header(1 | (1 << 1), (200, 50)) + big)
    big = b"ms k 2000 T0 F1\r\n" + b"v" * 2000 + b"\r\nmn\r\n"
    out(base, "text", "ms-too-large", header(1 | (1 << 1), (100,)) + big)
    out(base, "text", "long-get", header(1) + b"get " + b"k " * 1500 + b"\r\n")


# ------------------------------------------------------------------ binary


def pkt(op, key=b"", extras=b"", value=b"", opaque=0, cas=0, magic=0x80, bodylen=None):
    body = extras + key + value
    if bodylen is None:
        bodylen = len(body)
    return struct.pack(">BBHBBHIIQ", magic, op, len(key), len(extras), 0, 0, bodylen,
                       opaque, cas) + body


def binary_seeds(base):
    set_x = struct.pack(">II", 5, 0)
    arith = struct.pack(">QQI", 3, 10, 0)
    cases = {
        "get": pkt(0x00, b"foo", opaque=7),
        "set": pkt(0x01, b"foo", set_x, b"bar"),
        "set-cas": pkt(0x01, b"foo", set_x, b"bar", cas=12),
        "add": pkt(0x02, b"foo", set_x, b"v"),
        "replace": pkt(0x03, b"foo", set_x, b"v"),
        "delete": pkt(0x04, b"foo"),
        "incr": pkt(0x05, b"n", arith),
        "decr": pkt(0x06, b"n", arith),
        "quit": pkt(0x07),
        "flush": pkt(0x08),
        "flush-delay": pkt(0x08, extras=struct.pack(">I", 10)),
        "noop": pkt(0x0A),
        "version": pkt(0x0B),
        "getk": pkt(0x0C, b"foo"),
        "append": pkt(0x0E, b"foo", value=b"++"),
        "prepend": pkt(0x0F, b"foo", value=b"--"),
        "stat": pkt(0x10),
        "stat-settings": pkt(0x10, b"settings"),
        "touch": pkt(0x1C, b"foo", struct.pack(">I", 100)),
        "gat": pkt(0x1D, b"foo", struct.pack(">I", 100)),
        "gatk": pkt(0x23, b"foo", struct.pack(">I", 100)),
        "sasl-list": pkt(0x20),
        "sasl-auth-plain": pkt(0x21, b"PLAIN", value=b"\0bob\0builder"),
        "sasl-auth-scram": pkt(0x21, b"SCRAM-SHA-256", value=b"n,,n=bob,r=abcdef"),
        "sasl-step": pkt(0x22, b"SCRAM-SHA-256", value=b"c=biws,r=abcdefXYZ,p=AAAA"),
        "unknown-opcode": pkt(0x42, b"k", value=b"junk"),
        "bad-magic": pkt(0x00, b"foo", magic=0x81),
        "key-longer-than-body": pkt(0x00, b"foo", bodylen=1),
        "key-too-long": pkt(0x00, b"k" * 251),
        "get-with-extras": pkt(0x00, b"foo", extras=b"\0\0\0\0"),
        "set-too-large-1k": pkt(0x01, b"big", set_x, b"x" * 1200),
    }
    opts = 1  # CAS on, -I 1m
    for name, p in cases.items():
        o = opts | (1 << 1) if name.endswith("1k") else opts
        out(base, "binary", name, header(o) + p)
    quiet = b"".join([
        pkt(0x11, b"a", set_x, b"1"), pkt(0x12, b"b", set_x, b"2"),
        pkt(0x13, b"a", set_x, b"3"), pkt(0x19, b"a", value=b"4"),
        pkt(0x1A, b"a", value=b"5"), pkt(0x09, b"a"), pkt(0x0D, b"a"),
        pkt(0x14, b"b"), pkt(0x15, b"n", arith), pkt(0x16, b"n", arith),
        pkt(0x1E, b"a", struct.pack(">I", 1)), pkt(0x24, b"a", struct.pack(">I", 1)),
        pkt(0x18), pkt(0x0A), pkt(0x17),
    ])
    out(base, "binary", "quiet-pipeline", header(opts) + quiet)
    out(base, "binary", "quiet-pipeline-split", header(opts, (1, 5, 24, 25)) + quiet)
    auth = pkt(0x20) + pkt(0x21, b"PLAIN", value=b"\0bob\0builder") + pkt(0x00, b"k")
    out(base, "binary", "sasl-then-get", header(opts, (3, 30)) + auth)


# ------------------------------------------------------------------ auth


def auth_seeds(base):
    # Mode 0: -Y framing.
    for i, lit in enumerate(rust_literals(os.path.join(ROOT, "tests", "ascii_auth.rs"))):
        out(base, "auth", f"ascii-{i}", b"\x00" + header(0) + lit)
    out(base, "auth", "ascii-split",
        b"\x00" + header(0, (2, 9)) + b"set a 0 0 12\r\nalice secret\r\nget a\r\n")
    # Mode 1: -Y files.
    for i, f in enumerate([b"alice:secret\r\nbob:pw:with:colons\ncarol:last",
                           b"alice:secret\n\nbob:pw\n", b":empty\nnopw:\n", b"a:b\0c\nd:e\r\r\n"]):
        out(base, "auth", f"authfile-{i}", b"\x01" + f)
    # Mode 2: SASL credential files.
    salted = ("$scram-sha-256$4096$TFLi5/f6yEZR7LB3n9CJ7Q==$"
              "yNczvwP0CzzmVYDFyTisAJHhWHbW0bHyAhlZWh47T24=")
    for i, f in enumerate([
        "# comment\nalice:wonderland\r\n\n   \nbob:builder:extra",
        f"alice:wonderland\nbob:{salted}\n",
        "carol:$scram-sha-1$2$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "a:b\na:c\n", "nocolon\n", ":pw\n", "a:$scram-md5$1$AA==$AA==",
    ]):
        out(base, "auth", f"pwdb-{i}", b"\x02" + f.encode())
    # Mode 3: raw sessions (cfg byte: 0 PLAIN, 1 SCRAM-SHA-256, 2 SCRAM-SHA-1, 3 named).
    sep = b"\xff\xff"
    raw = {
        "plain": b"\x00" + b"\0bob\0builder",
        "plain-alice": b"\x00" + b"\0alice\0wonderland",
        "plain-authzid": b"\x00" + b"carol\0carol\0s3cret",
        "plain-steps": b"\x00" + sep + b"\0alice\0wonderland" + sep + b"x",
        "scram256": b"\x01" + b"n,,n=bob,r=abcdef" + sep + b"c=biws,r=abcdef,p=AAAA" + sep,
        "scram1-y": b"\x02" + b"y,,n=carol,r=xyz" + sep + b"c=eSws,r=xyz,p=AAAA",
        "scram-authzid": b"\x01" + b"n,a=dave,n=dave,r=q",
        "named": b"\x03" + b"CRAM-MD5" + sep + b"x",
        "named-scram": b"\x07" + b"SCRAM-SHA-1" + sep + sep + b"n,,n=bob,r=1",
    }
    for name, r in raw.items():
        out(base, "auth", "raw-" + name, b"\x03" + r)
    # Mode 4: valid clients (cfg, user, password choice, segments).
    for cfg in [0x00, 0x01, 0x02, 0x04, 0x08, 0x0A, 0x10, 0x20, 0x30]:
        for who in [0, 1, 2, 3, 9]:
            if who in (1, 2) and cfg not in (0x00, 0x01):
                continue
            out(base, "auth", f"client-{cfg:02x}-{who}", b"\x04" + bytes([cfg, who, 0]))
    out(base, "auth", "client-wrong-pw", b"\x04" + bytes([0, 0, 1]) + b"notit")
    out(base, "auth", "client-ext", b"\x04" + bytes([0, 0, 0]) + sep + b"foo=bar")
    out(base, "auth", "client-corrupt", b"\x04" + bytes([1, 0, 0]) + sep + sep + sep + b"\x05\x41")


def snap_block(kind, records, payload):
    import zlib
    h = bytes([kind, 0, 0, 0]) + struct.pack("<II", len(payload), records)
    return h + struct.pack("<I", zlib.crc32(h + payload) & 0xFFFFFFFF) + payload


def snap_header(cas_counter, flush_at=0, flush_cas=0, saved_at=1_800_000_000):
    import zlib
    h = b"FCSNAP\r\n" + struct.pack("<II", 1, 96)
    h += struct.pack("<qQqQ", saved_at, cas_counter, flush_at, flush_cas)
    h += struct.pack("<II", 1, 4) + b"0.1.0".ljust(32, b"\0") + b"\0" * 4
    return h + struct.pack("<I", zlib.crc32(h) & 0xFFFFFFFF)


def snap_record(key, value, cas, flags=0, exp=0, atime=1_800_000_000, bits=0):
    return (struct.pack("<BBII", bits, len(key), len(value), flags)
            + struct.pack("<qqQ", exp, atime, cas) + key + value)


def snapshot_seeds(base):
    cases = {
        "items": (7, [snap_record(b"k%d" % i, b"v" * i, i + 1, flags=i, bits=i & 0x3F)
                      for i in range(6)]),
        "cas-edge": ((1 << 48) - 2, [snap_record(b"a", b"A", (1 << 48) - 1)]),
        "cas-over": (5, [snap_record(b"a", b"A", 1 << 48)]),
        "expiring": (3, [snap_record(b"e", b"E", 2, exp=1_800_000_100),
                         snap_record(b"x", b"X", 3, exp=1)]),
        "dup": (9, [snap_record(b"d", b"1", 4), snap_record(b"d", b"2", 8)]),
    }
    for name, (counter, recs) in cases.items():
        payload = b"".join(recs)
        f = snap_header(counter) + snap_block(1, len(recs), payload)
        f += snap_block(2, 0, struct.pack("<QQQQ", len(recs), 1, len(payload), len(payload)))
        for opts in (0x00, 0x01, 0x02, 0x0C):
            out(base, "snapshot", f"{name}-{opts:02x}", bytes([opts]) + f)
    # Counts and lengths the file cannot hold.
    f = snap_header(0) + snap_block(2, 0, struct.pack("<QQQQ", 1 << 40, 0, 0, 0))
    out(base, "snapshot", "count-2e40", b"\x00" + f)
    f = snap_header(0) + bytes([1, 0, 0, 0]) + struct.pack("<II", 0xFFFFFFF0, 1) + b"\0" * 4
    out(base, "snapshot", "long-block", b"\x01" + f)
    out(base, "snapshot", "wrap-header", b"\x00" + snap_header((1 << 64) - 1))
    out(base, "snapshot", "flush", b"\x00" + snap_header(4, flush_at=1_900_000_000, flush_cas=3))


def cluster_seeds(base):
    sep = b"\xff\xff"
    payloads = [
        b"12\nmyCluster.pc4ldq.0001.use1.cache.amazonaws.com|10.82.235.120|11211 "
        b"myCluster.pc4ldq.0002.use1.cache.amazonaws.com|10.80.249.27|11211\n",
        b"18446744073709551615\nevil|127.0.0.99|11211",
        b"9007199254740991\nn|127.0.0.1|1",
        b"9007199254740990\nn|127.0.0.1|1",
        b"3\nv6|::1|11400 a.example||11211\n",
        b"# fleet\n7\nlocalhost|127.0.0.1|11211\n127.0.0.1:11212 # second\n[::1]:11300\n",
        b"1\n" + b" ".join(b"n%d|127.0.0.1|%d" % (i, i + 1) for i in range(40)),
        b"x\na||1\n",
        b"5\n\n",
    ]
    for i, p in enumerate(payloads):
        for opts in (0x00, 0x01):
            out(base, "cluster", f"one-{i}-{opts}", bytes([opts]) + p)
    out(base, "cluster", "sequence", b"\x01" + sep.join([payloads[4], b"\x02" + payloads[3][1:],
                                                        payloads[3], payloads[0]]))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    base = sys.argv[1]
    text_seeds(base)
    binary_seeds(base)
    auth_seeds(base)
    snapshot_seeds(base)
    cluster_seeds(base)
    for t in ["text", "binary", "auth", "snapshot", "cluster"]:
        d = os.path.join(base, t)
        files = os.listdir(d)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in files)
        print(f"{t}: {len(files)} candidates, {size} bytes")


if __name__ == "__main__":
    main()
