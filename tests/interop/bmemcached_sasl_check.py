#!/usr/bin/python3
"""SASL PLAIN over the binary protocol through python-binary-memcached.

usage: bmemcached_sasl_check.py HOST PORT USER PASSWORD EXPECTED_MECHS

Against a server started with -S whose credentials file lets USER log in with
PASSWORD, checks that:
  * SASL_LIST_MECHS answers exactly EXPECTED_MECHS (e.g. "SCRAM-SHA-256 PLAIN");
  * bmemcached with the right credentials stores and reads values;
  * bmemcached with a wrong password, with an unknown user and with no
    credentials at all is refused with status 0x20 (MemcachedException code 32)
    and stores nothing;
  * on a raw connection, a data command before authentication gets 0x20
    "Auth failure." and the server closes the connection, VERSION is allowed,
    and a failed SASL_AUTH leaves the connection open for a successful retry.

Prints one line per check and a closing `bmemcached-sasl: N passed, M failed`
line; exits 1 on any failure, 77 when bmemcached is not installed.
"""
import os
import signal
import socket
import struct
import sys

try:
    import bmemcached
    from bmemcached.exceptions import MemcachedException
except ImportError:
    print("bmemcached-sasl: module bmemcached not installed")
    sys.exit(77)

TIMEOUT = 5.0
AUTH_ERROR = 0x20
HEADER = struct.Struct(">BBHBBHIIQ")
OP_GET, OP_SET, OP_VERSION = 0x00, 0x01, 0x0B
OP_LIST_MECHS, OP_AUTH = 0x20, 0x21

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


# ---- raw binary protocol -------------------------------------------------------


def request(opcode, key=b"", value=b"", extras=b"", opaque=0):
    """One binary request packet."""
    body = len(extras) + len(key) + len(value)
    return HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0, body, opaque, 0) + extras + key + value


def recv_exact(sock, n):
    """n bytes, or None when the peer closes first."""
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def response(sock):
    """(opcode, status, key, value) of the next response; raises on close."""
    head = recv_exact(sock, HEADER.size)
    if head is None:
        raise EOFError("server closed the connection")
    magic, opcode, keylen, extlen, _dt, status, bodylen, _opaque, _cas = HEADER.unpack(head)
    if magic != 0x81:
        raise ValueError("response magic 0x%02x" % magic)
    body = recv_exact(sock, bodylen) if bodylen else b""
    if body is None:
        raise EOFError("server closed the connection inside a response")
    return opcode, status, body[extlen:extlen + keylen], body[extlen + keylen:]


def connect(host, port):
    return socket.create_connection((host, port), timeout=TIMEOUT)


def plain(user, password):
    return b"\0" + user.encode() + b"\0" + password.encode()


# ---- the checks -----------------------------------------------------------------


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    host, port, user, password, want_mechs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    signal.alarm(50)  # the whole run is bounded even if a socket timeout is missed
    server = "%s:%d" % (host, port)
    prefix = "bms%d_" % os.getpid()
    wrong_password = password + "-wrong"
    unknown_user = "nosuch" + user

    def client(u=None, p=None):
        if u is None:
            return bmemcached.Client((server,), socket_timeout=TIMEOUT)
        return bmemcached.Client((server,), u, p, socket_timeout=TIMEOUT)

    good = client(user, password)

    def list_mechs():
        with connect(host, port) as s:
            s.sendall(request(OP_LIST_MECHS))
            _op, status, _key, value = response(s)
        check("raw SASL_LIST_MECHS", status == 0 and value == want_mechs.encode(),
              "status 0x%02x, mechanisms %r, want %r" % (status, value, want_mechs))

    def good_credentials():
        r = good.set(prefix + "a", "alpha")
        check("bmemcached right credentials: set", r is True, "set returned %r" % (r,))
        g = good.get(prefix + "a")
        check("bmemcached right credentials: get", g == "alpha", "get returned %r" % (g,))
        blob = bytes(range(256)) * 64
        r = good.set(prefix + "blob", blob)
        g = good.get(prefix + "blob")
        check("bmemcached right credentials: 16 KiB bytes value", r is True and g == blob,
              "set %r, get %s" % (r, "matches" if g == blob else "differs: %r" % (g[:40] if g else g,)))
        check("bmemcached right credentials: miss", good.get(prefix + "missing") is None)

    def refused(name, u, p):
        key = prefix + "refused_" + name.replace(" ", "_")
        c = client(u, p)
        try:
            r = c.set(key, "must-not-be-stored")
            check("bmemcached %s: refused" % name, False, "set returned %r instead of raising" % (r,))
        except MemcachedException as e:
            check("bmemcached %s: refused with 0x20" % name, e.code == AUTH_ERROR,
                  "MemcachedException code %r (%s)" % (e.code, e.message))
        finally:
            c.disconnect_all()
        g = good.get(key)
        check("bmemcached %s: nothing stored" % name, g is None, "good client reads %r" % (g,))

    def unauthenticated_raw():
        with connect(host, port) as s:
            s.sendall(request(OP_VERSION))
            _op, status, _key, value = response(s)
            check("raw VERSION before auth allowed", status == 0 and len(value) > 0,
                  "status 0x%02x, %r" % (status, value))
            s.sendall(request(OP_GET, (prefix + "a").encode()))
            _op, status, _key, value = response(s)
            check("raw GET before auth: 0x20 Auth failure.", status == AUTH_ERROR and value == b"Auth failure.",
                  "status 0x%02x, %r" % (status, value))
            try:
                closed = s.recv(1) == b""
            except socket.timeout:
                closed = False
            check("raw GET before auth: connection closed", closed)

    def retry_after_failure():
        with connect(host, port) as s:
            s.sendall(request(OP_AUTH, b"PLAIN", plain(user, wrong_password)))
            _op, status, _key, value = response(s)
            check("raw AUTH PLAIN wrong password: 0x20", status == AUTH_ERROR,
                  "status 0x%02x, %r" % (status, value))
            s.sendall(request(OP_AUTH, b"PLAIN", plain(user, password)))
            _op, status, _key, value = response(s)
            check("raw AUTH PLAIN retry on the same connection", status == 0 and value == b"Authenticated",
                  "status 0x%02x, %r" % (status, value))
            s.sendall(request(OP_GET, (prefix + "a").encode()))
            _op, status, _key, value = response(s)
            check("raw GET after auth reads bmemcached's value", status == 0 and value == b"alpha",
                  "status 0x%02x, %r" % (status, value))

    step("list mechanisms", list_mechs)
    step("right credentials", good_credentials)
    step("wrong password", lambda: refused("wrong password", user, wrong_password))
    step("unknown user", lambda: refused("unknown user", unknown_user, password))
    step("no credentials", lambda: refused("no credentials", None, None))
    step("raw unauthenticated", unauthenticated_raw)
    step("raw retry", retry_after_failure)
    good.disconnect_all()
    print("bmemcached-sasl: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
