#!/usr/bin/python3
"""First request after a TLS 1.3 handshake, as a client with Nagle's algorithm on
(pymemcache's default) sees it (issue #24, point 6).

    tests/tools/tls_first_request.py PORT [N]

Against a `-Z` server on 127.0.0.1:PORT, N times (default 50): connect, complete a
TLS 1.3 handshake (certificate not verified), then time `set` until `STORED`, then
`get`, close. Prints the median and p90 of the first request and the median of the
whole connect + handshake + set + get. Bounded: 5 s socket timeouts, N <= 10000.
"""
import socket
import ssl
import statistics
import sys
import time


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    port = int(sys.argv[1])
    n = min(int(sys.argv[2]) if len(sys.argv) == 3 else 50, 10000)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    first, total = [], []
    for i in range(n):
        t0 = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        t = ctx.wrap_socket(s)
        t1 = time.perf_counter()
        t.sendall(b"set k%d 0 0 1\r\nx\r\n" % i)
        buf = b""
        while not buf.endswith(b"\r\n"):
            d = t.recv(100)
            if not d:
                sys.exit("closed before STORED")
            buf += d
        t2 = time.perf_counter()
        t.sendall(b"get k%d\r\n" % i)
        buf = b""
        while not buf.endswith(b"END\r\n"):
            d = t.recv(100)
            if not d:
                sys.exit("closed before END")
            buf += d
        t3 = time.perf_counter()
        t.close()
        first.append((t2 - t1) * 1000)
        total.append((t3 - t0) * 1000)
    first.sort()
    print(
        "port %d: first request after a TLS 1.3 handshake median %.2f ms p90 %.2f ms; "
        "connect+handshake+set+get median %.2f ms (n=%d)"
        % (port, statistics.median(first), first[max(0, int(n * 0.9) - 1)],
           statistics.median(total), n)
    )


if __name__ == "__main__":
    main()
