#!/usr/bin/python3
"""ring_reference.py - key -> server placement as the real client libraries compute it.

Usage: ring_reference.py MODE [--keys N] [--random N] [--unicode] SERVER [SERVER ...]

Prints one line per key: "<key as UTF-8 hex> <index of the server in the list>".
Keys: "key:%08d" for 0 <= i < N (--keys, default 10000), then --random N
pseudo-random printable-ASCII keys (fixed seed, 1..250 bytes), then with --unicode a
few non-ASCII keys.

MODE (no server is contacted; nothing listens or connects):
  pylibmc-ketama-weighted  pylibmc.Client(servers, {"ketama_weighted": True}).hash(key)
  pylibmc-ketama           pylibmc.Client(servers, {"ketama": True}).hash(key)
  pylibmc-modula           pylibmc.Client(servers, {"distribution": "modula"}).hash(key)
      pylibmc's Client.hash() is libmemcached's memcached_generate_hash(): the index
      of the server the key goes to. SERVER as pylibmc takes it: host[:port[:weight]].
  rendezvous               pymemcache.client.hash.HashClient(servers).hasher.get_node()
      (RendezvousHash + murmur3_32); SERVER as host[:port] or [v6]:port.
  spymemcached             net.spy.memcached.KetamaNodeLocator with
      DefaultHashAlgorithm.KETAMA_HASH (Debian's libspymemcached-java + a JDK): a tiny
      Java program is compiled into a temporary directory and run. SERVER as ip:port.

Exit 77 when the client library (or java/javac/the jar) is missing.
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
SPY_JAR = "/usr/share/java/spymemcached.jar"

JAVA = r"""
import java.io.*;
import java.lang.reflect.*;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.*;
import net.spy.memcached.*;

public class SpyRing {
  static MemcachedNode node(final InetSocketAddress a) {
    return (MemcachedNode) Proxy.newProxyInstance(SpyRing.class.getClassLoader(),
        new Class<?>[] {MemcachedNode.class}, new InvocationHandler() {
          public Object invoke(Object p, Method m, Object[] args) {
            switch (m.getName()) {
              case "getSocketAddress": return a;
              case "hashCode": return System.identityHashCode(p);
              case "equals": return p == args[0];
              case "toString": return "node " + a;
              default: throw new UnsupportedOperationException(m.getName());
            }
          }
        });
  }

  public static void main(String[] argv) throws IOException {
    List<MemcachedNode> nodes = new ArrayList<>();
    for (InetSocketAddress a : AddrUtil.getAddresses(String.join(" ", argv))) {
      nodes.add(node(a));
    }
    KetamaNodeLocator loc = new KetamaNodeLocator(nodes, DefaultHashAlgorithm.KETAMA_HASH);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
    PrintWriter out = new PrintWriter(new BufferedWriter(new OutputStreamWriter(System.out)));
    String hex;
    while ((hex = in.readLine()) != null) {
      byte[] b = new byte[hex.length() / 2];
      for (int i = 0; i < b.length; i++) {
        b[i] = (byte) Integer.parseInt(hex.substring(2 * i, 2 * i + 2), 16);
      }
      String key = new String(b, StandardCharsets.UTF_8);
      out.println(hex + " " + nodes.indexOf(loc.getPrimary(key)));
    }
    out.flush();
  }
}
"""


def make_keys(n, n_random, unicode_keys):
    keys = ["key:%08d" % i for i in range(n)]
    rng = random.Random(20240611)
    alphabet = [chr(c) for c in range(0x21, 0x7F)]
    for _ in range(n_random):
        keys.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 250))))
    if unicode_keys:
        keys += ["caf\u00e9", "\u65e5\u672c\u8a9e", "\U0001F600-emoji", "\u00ff\u0100\u01ff",
                 "na\u00efve:%d" % 7, "\u0416" * 37]
    return keys


def emit(pairs):
    out = sys.stdout
    for key, idx in pairs:
        out.write("%s %d\n" % (key.encode("utf-8").hex(), idx))


def pylibmc_mode(mode, servers, keys):
    try:
        import pylibmc
    except ImportError:
        print("ring_reference: pylibmc not installed", file=sys.stderr)
        sys.exit(SKIP)
    behaviors = {
        "pylibmc-ketama-weighted": {"ketama_weighted": True},
        "pylibmc-ketama": {"ketama": True},
        "pylibmc-modula": {"distribution": "modula"},
    }[mode]
    mc = pylibmc.Client(servers, behaviors=behaviors)
    emit((k, mc.hash(k)) for k in keys)


def rendezvous_mode(servers, keys):
    try:
        from pymemcache.client.base import normalize_server_spec
        from pymemcache.client.hash import HashClient
    except ImportError:
        print("ring_reference: pymemcache not installed", file=sys.stderr)
        sys.exit(SKIP)
    hc = HashClient(servers, allow_unicode_keys=True)
    names = [hc._make_client_key(normalize_server_spec(s)) for s in servers]
    emit((k, names.index(hc.hasher.get_node(k))) for k in keys)


def spymemcached_mode(servers, keys):
    java, javac = shutil.which("java"), shutil.which("javac")
    if not (java and javac and os.path.exists(SPY_JAR)):
        print("ring_reference: needs java, javac and %s (Debian libspymemcached-java)" % SPY_JAR,
              file=sys.stderr)
        sys.exit(SKIP)
    with tempfile.TemporaryDirectory(prefix="spyring") as d:
        with open(os.path.join(d, "SpyRing.java"), "w") as f:
            f.write(JAVA)
        subprocess.run([javac, "-nowarn", "-cp", SPY_JAR, "-d", d, os.path.join(d, "SpyRing.java")],
                       check=True, timeout=120)
        feed = "".join(k.encode("utf-8").hex() + "\n" for k in keys)
        run = subprocess.run([java, "-cp", SPY_JAR + os.pathsep + d, "SpyRing"] + servers,
                             input=feed, capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            sys.exit("ring_reference: java failed: %s" % run.stderr[-2000:])
        sys.stdout.write(run.stdout)


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    mode, rest = args[0], args[1:]
    n, n_random, unicode_keys, servers = 10000, 0, False, []
    i = 0
    while i < len(rest):
        if rest[i] == "--keys":
            n = int(rest[i + 1])
            i += 2
        elif rest[i] == "--random":
            n_random = int(rest[i + 1])
            i += 2
        elif rest[i] == "--unicode":
            unicode_keys = True
            i += 1
        else:
            servers.append(rest[i])
            i += 1
    if not servers:
        sys.exit("ring_reference: no servers given")
    keys = make_keys(n, n_random, unicode_keys)
    if mode.startswith("pylibmc-"):
        pylibmc_mode(mode, servers, keys)
    elif mode == "rendezvous":
        rendezvous_mode(servers, keys)
    elif mode == "spymemcached":
        spymemcached_mode(servers, keys)
    else:
        sys.exit("ring_reference: unknown mode %r" % mode)


if __name__ == "__main__":
    main()
