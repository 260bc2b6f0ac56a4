#!/usr/bin/python3
"""SASL over the binary protocol through pylibmc (libmemcached + Cyrus SASL).

usage: pylibmc_sasl_check.py HOST PORT USER PASSWORD EXPECTED_MECH

Against a server started with -S whose credentials file lets USER log in with
PASSWORD, checks that pylibmc (binary=True, username/password):
  * with the right credentials round-trips set/get (several keys, one value of
    100 KiB) and get_multi;
  * with a wrong password, and with an unknown user, fails with pylibmc.Error
    and stores nothing;
  * authenticates with EXPECTED_MECH (Cyrus picks the strongest mechanism the
    server lists). To see which one it picked, pylibmc talks to the server
    through a small TCP forwarder in this script that parses the binary request
    headers going to the server and records the key (the mechanism name) of
    every SASL_AUTH (0x21) and SASL_STEP (0x22) request, and the status of the
    server's answers to them.

Prints one line per check, `mechanism used: X` for the good login, and a
closing `pylibmc-sasl: N passed, M failed` line; exits 1 on any failure, 77
when pylibmc is not installed.
"""
import glob
import os
import signal
import socket
import struct
import sys
import threading

try:
    import pylibmc
except ImportError:
    print("pylibmc-sasl: module pylibmc not installed")
    sys.exit(77)

HEADER = struct.Struct(">BBHBBHIIQ")
OP_LIST_MECHS, OP_AUTH, OP_STEP = 0x20, 0x21, 0x22
SASL_OPS = (OP_LIST_MECHS, OP_AUTH, OP_STEP)
AUTH_ERROR = 0x20
RELAY_TIMEOUT = 30.0

passed = 0
failed = 0


def check(name, ok, detail=""):
    """Counts one check and prints its outcome."""
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print("%-4s %s%s" % ("ok" if ok else "FAIL", name, (": " + detail) if detail else ""))


def step(name, fn):
    """Runs a group of checks; an unexpected exception counts as a failure."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every error is a failed check
        check(name, False, "unexpected %s: %s" % (type(e).__name__, e))


class Forwarder:
    """Relays 127.0.0.1:<self.port> to the server and records the SASL traffic.

    requests: (opcode, key) of every client->server SASL_AUTH / SASL_STEP /
    SASL_LIST_MECHS request; replies: (opcode, status, value) of the server's
    answers to them; errors: anything that broke the relaying or the parsing.
    """

    def __init__(self, host, port):
        self.target = (host, port)
        self.lock = threading.Lock()
        self.requests = []
        self.replies = []
        self.errors = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(1.0)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.requests, self.replies, self.errors = [], [], []

    def auth_mechs(self):
        with self.lock:
            return [k for op, k in self.requests if op == OP_AUTH]

    def step_mechs(self):
        with self.lock:
            return [k for op, k in self.requests if op == OP_STEP]

    def final_status(self):
        """Status of the server's last answer to SASL_AUTH/SASL_STEP (None: none seen)."""
        with self.lock:
            sts = [st for op, st, _ in self.replies if op in (OP_AUTH, OP_STEP)]
        return sts[-1] if sts else None

    def _error(self, msg):
        with self.lock:
            self.errors.append(msg)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5.0)
            except OSError as e:
                self._error("connect to server: %s" % e)
                client.close()
                continue
            for s in (client, server):
                s.settimeout(RELAY_TIMEOUT)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._relay, args=(client, server, 0x80), daemon=True).start()
            threading.Thread(target=self._relay, args=(server, client, 0x81), daemon=True).start()

    def _relay(self, src, dst, magic):
        buf = bytearray()
        parsing = True
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                # Record first, then pass on: the peer cannot act on a packet
                # before it is in the log.
                if parsing:
                    buf += data
                    parsing = self._parse(buf, magic)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def _parse(self, buf, magic):
        """Consumes the complete packets at the front of buf; False if out of step."""
        while len(buf) >= HEADER.size:
            m, opcode, keylen, extlen, _dt, status, bodylen, _opq, _cas = HEADER.unpack_from(buf)
            if m != magic:
                self._error("magic 0x%02x where 0x%02x was expected" % (m, magic))
                return False
            end = HEADER.size + bodylen
            if len(buf) < end:
                return True
            if opcode in SASL_OPS:
                key = bytes(buf[HEADER.size + extlen:HEADER.size + extlen + keylen]).decode("ascii", "replace")
                value = bytes(buf[HEADER.size + extlen + keylen:end])
                with self.lock:
                    if magic == 0x80:
                        self.requests.append((opcode, key))
                    else:
                        self.replies.append((opcode, status, value))
            del buf[:end]
        return True


def scram_plugin_present():
    """True when Cyrus SASL can load its SCRAM client plugin (from $SASL_PATH if set)."""
    if os.environ.get("SASL_PATH"):
        dirs = [d for d in os.environ["SASL_PATH"].split(":") if d]
    else:
        dirs = glob.glob("/usr/lib/*/sasl2") + glob.glob("/usr/lib/sasl2")
    return any(glob.glob(os.path.join(d, "libscram.so*")) for d in dirs)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    host, port, user, password, want_mech = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    signal.alarm(50)  # the whole run is bounded even if a socket timeout is missed
    prefix = "pls%d_" % os.getpid()
    fwd = Forwarder(host, port)

    def client(u, p):
        return pylibmc.Client(
            ["127.0.0.1:%d" % fwd.port],
            binary=True,
            username=u,
            password=p,
            behaviors={"connect_timeout": 5000, "receive_timeout": 10000000, "send_timeout": 10000000},
        )

    good = client(user, password)
    big = bytes((i * 7 + 3) % 251 for i in range(100 * 1024))

    def good_credentials():
        fwd.reset()
        values = {prefix + "a": b"alpha", prefix + "b": b"\x00\r\n\xff", prefix + "big": big}
        for k, v in values.items():
            check("right credentials: set %s (%d bytes)" % (k, len(v)), good.set(k, v) is True)
        for k, v in values.items():
            g = good.get(k)
            check("right credentials: get %s" % k, g == v,
                  "got %d bytes, %s" % (len(g), "equal" if g == v else "different") if g is not None else "got None")
        got = good.get_multi(list(values) + [prefix + "missing"])
        check("right credentials: get_multi", got == values, "keys %r" % sorted(got or {}))

        auths, steps = fwd.auth_mechs(), fwd.step_mechs()
        mechs = sorted(set(auths))
        print("mechanism used: %s" % (", ".join(mechs) if mechs else "(no SASL_AUTH seen)"))
        print("SASL_AUTH requests %r, SASL_STEP requests %r" % (auths, steps))
        check("right credentials: SASL_AUTH went through the forwarder", len(auths) >= 1, "%r" % auths)
        ok = bool(auths) and all(m == want_mech for m in auths)
        detail = "SASL_AUTH mechanisms %r, want %r" % (auths, want_mech)
        if not ok and want_mech.startswith("SCRAM") and not scram_plugin_present():
            detail += " (Cyrus SCRAM plugin libscram.so missing: install libsasl2-modules)"
        check("right credentials: mechanism is %s" % want_mech, ok, detail)
        if want_mech.startswith("SCRAM"):
            # SCRAM needs a second round trip: a SASL_STEP with the same mechanism.
            check("right credentials: SCRAM continued with SASL_STEP",
                  len(steps) >= 1 and all(m == want_mech for m in steps), "%r" % steps)
        st = fwd.final_status()
        check("right credentials: server's last SASL answer is success", st == 0, "status %r" % st)
        check("forwarder saw well-formed packets", not fwd.errors, "%r" % fwd.errors)

    def refused(name, u, p):
        fwd.reset()
        key = prefix + "refused_" + name.replace(" ", "_")
        c = client(u, p)
        try:
            r = c.set(key, b"must-not-be-stored")
            check("%s: refused" % name, False, "set returned %r instead of raising" % (r,))
        except pylibmc.Error as e:
            check("%s: set raises pylibmc.Error" % name, True, str(e).split(",")[0])
        finally:
            c.disconnect_all()
        auths = fwd.auth_mechs()
        check("%s: tried %s" % (name, want_mech), bool(auths) and all(m == want_mech for m in auths),
              "SASL_AUTH mechanisms %r" % auths)
        st = fwd.final_status()
        check("%s: server answered 0x20" % name, st == AUTH_ERROR, "status %r" % st)
        g = good.get(key)
        check("%s: nothing stored" % name, g is None, "good client reads %r" % (g[:40] if g else g,))

    step("right credentials", good_credentials)
    step("wrong password", lambda: refused("wrong password", user, password + "-wrong"))
    step("unknown user", lambda: refused("unknown user", "nosuch" + user, password))
    good.disconnect_all()
    print("pylibmc-sasl: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
