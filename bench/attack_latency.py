#!/usr/bin/python3
"""How fast a legitimate client is served during the connection attacks of
issue 17 (docs/consentd.md, "Limits under attack"; docs/benchmarks.md). The
tests assert that it is served while the attack is in progress, never how
fast (a busy CI machine); this measures it, against a same-run baseline:

  - API: max_connections 32 (8 reserved), 320 connections without a token,
    half idle, half dribbling a header; a client with a token grants and
    revokes (one request each, a new connection each: the worst case, it
    must be given a slot);
  - privacy page: 612 such connections against its 512 slots; a browser's
    GET / on a new connection.

  CONSENTD=build/src/consentd/consentd OPTGATECTL=build/src/ctl/optgatectl \\
  CONSENTD_TEST_POLICY=config/policy.example.yaml /usr/bin/python3 bench/attack_latency.py [ROUNDS]
"""
import base64
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "consentd"))
from daemon import PATIENCE, Daemon  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
GRANT = {"source": "portal", "notice_version": "2026-01"}


def summary(ms):
    ms = sorted(ms)
    return (f"p50 {statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, "
            f"max {ms[-1]:.2f} ms (n={len(ms)})")


def attack(port, n):
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        if i % 2:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def api_round(d, i):
    t = time.monotonic()
    st, _, _ = d.request("PUT", f"/v1/subscribers/bench-{i}/consents/advertising", GRANT)
    assert st == 200
    st, _, _ = d.request("DELETE", f"/v1/subscribers/bench-{i}/consents/advertising", {"source": "portal"})
    assert st == 200
    return (time.monotonic() - t) * 1000 / 2


def page_round(port):
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head = s.recv(64)
    s.close()
    assert head.startswith(b"HTTP/1.1 4") or head.startswith(b"HTTP/1.1 2"), head
    return (time.monotonic() - t) * 1000


d = Daemon(limits="limits: {max_connections: 32, reserved_connections: 8, header_timeout: 60s}\n")
secret = os.path.join(d.dir, "link.key")
with open(secret, "w") as f:
    f.write(base64.b16encode(os.urandom(32)).decode() + "\n")
d.stop()
with open(d.config, "a") as f:
    f.write("portal:\n  mode: signed-link\n  listen: {address: 127.0.0.1, port: 0}\n"
            f"  link_secret_file: {secret}\n  notice_version: \"2026-01\"\n")
d.start()
while not os.path.exists(d.port_file + ".portal"):
    time.sleep(0.05)
with open(d.port_file + ".portal") as f:
    portal = int(f.read())
try:
    base = [api_round(d, i) for i in range(ROUNDS)]
    socks = attack(d.port, 320)
    during = [api_round(d, ROUNDS + i) for i in range(ROUNDS)]
    for s in socks:
        s.close()
    print(f"API, a request with a token: baseline {summary(base)}", flush=True)
    print(f"API, during 320 idle/slowloris connections (32 slots): {summary(during)}", flush=True)
    base = [page_round(portal) for _ in range(ROUNDS)]
    socks = attack(portal, 612)
    during = [page_round(portal) for _ in range(ROUNDS)]
    for s in socks:
        s.close()
    print(f"privacy page, GET /: baseline {summary(base)}", flush=True)
    print(f"privacy page, during 612 idle/slowloris connections (512 slots): {summary(during)}", flush=True)
finally:
    d.cleanup()
