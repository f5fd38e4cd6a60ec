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
    GET / on a new connection;
  - requests that make consentd work (items 4, 8, 9), on a daemon of their
    own: four connections sending bodies of 120k JSON keys in a loop; eight
    unread pages of a 100,000-event history; a 256 MiB import upload in
    flight. The same grant and revoke, against that daemon's baseline;
  - the mutual-TLS data-plane port (items 1 and 5), on a third daemon with
    the attack test's set-up (descriptor limit 1,400): 2,000 connections
    from one address that never begin the handshake; then four attackers
    sending stats headers before hello, with 40 silent TLS connections. A
    data plane's connect (TCP, TLS, hello, welcome) on a new connection,
    and a grant with ?wait=enforced acknowledged by a connected data plane.

  CONSENTD=build/src/consentd/consentd OPTGATECTL=build/src/ctl/optgatectl \\
  CONSENTD_TEST_POLICY=config/policy.example.yaml /usr/bin/python3 bench/attack_latency.py [ROUNDS]
"""
import base64
import itertools
import os
import select
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "consentd"))
from daemon import (PATIENCE, TOKENS, Attack, Daemon, eventually, history_request, import_head,  # noqa: E402
                    json_keys_body, long_history)
import dataplane_attack_test as dpa  # noqa: E402

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


def expensive_requests():
    d = Daemon(limits="limits: {header_timeout: 60s, body_timeout: 60s, write_timeout: 120s}\n")
    try:
        long_history(d, "long-history", 100000)
        base = [api_round(d, i) for i in range(ROUNDS)]
        print(f"API (a second daemon), a request with a token: baseline {summary(base)}", flush=True)

        body, _ = json_keys_body()
        conns = [d.connect() for _ in range(4)]
        attack = Attack(4, 1 << 20, lambda i: d.request("PUT", "/v1/subscribers/keys/consents/advertising", body,
                                                        headers={"Content-Type": "application/json"},
                                                        conn=conns[i]))
        assert eventually(lambda: len(attack.answers) >= 4 or attack.errors), attack.errors
        during = [api_round(d, ROUNDS + i) for i in range(ROUNDS)]
        assert attack.running() and not attack.errors, attack.errors
        attack.finish()
        for c in conns:
            c.close()
        print(f"API, during 4 connections sending 938 KiB bodies of 120k keys ({len(attack.answers)} answered): "
              f"{summary(during)}", flush=True)

        pages = []
        for _ in range(8):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", d.port))
            s.sendall(history_request("long-history", 100000, TOKENS["auditor"][0]))
            pages.append(s)
        # While the pages are read and built (on the history thread), then
        # while all eight are built and held, unread.
        during = [api_round(d, 2 * ROUNDS + i) for i in range(ROUNDS)]
        print(f"API, while 8 pages of 100,000 events are built: {summary(during)}", flush=True)
        assert eventually(lambda: all(select.select([s], [], [], 0)[0] for s in pages))
        during = [api_round(d, 3 * ROUNDS + i) for i in range(ROUNDS)]
        for s in pages:
            s.close()
        print(f"API, while those 8 pages (31 MiB each) are held unread: {summary(during)}", flush=True)

        first = socket.create_connection(("127.0.0.1", d.port), timeout=PATIENCE)
        first.sendall(import_head(256 << 20, TOKENS["ops"][0]))
        line = b'{"subscriber": "uploading", "addresses": ["100.66.0.1"]}\n'
        for _ in range((16 << 20) // (len(line) * 4096)):
            first.sendall(line * 4096)
        during = [api_round(d, 4 * ROUNDS + i) for i in range(ROUNDS)]
        first.setblocking(False)
        try:
            first.recv(1, socket.MSG_PEEK)
            unanswered = False
        except BlockingIOError:
            unanswered = True
        first.close()
        assert unanswered, "the import was answered before the measurement ended"
        print(f"API, during a 256 MiB import upload (16 MiB sent, unanswered): {summary(during)}", flush=True)
    finally:
        d.cleanup()


def dataplane_port_attacks():
    certs = tempfile.mkdtemp(prefix="attack-latency-certs-")
    dpa.make_certs(certs)
    d, port = dpa.tls_daemon(certs)

    def connect_round():
        t = time.monotonic()
        s = dpa.tls_connection(certs, port)
        s.sendall(dpa.hello("edge-py"))
        ftype, _ = dpa.read_frame(s)
        ms = (time.monotonic() - t) * 1000
        s.close()
        assert ftype == 0x10, "welcome"
        return ms

    grants = itertools.count()

    def enforced_round():
        t = time.monotonic()
        verb = "PUT" if next(grants) % 2 == 0 else "DELETE"
        st, _, j = d.request(verb, "/v1/subscribers/cust-1/consents/analytics?wait=enforced&timeout=60s",
                             {"source": "portal", "notice_version": "v1"} if verb == "PUT" else {"source": "portal"})
        assert st == 200 and j["enforcement"]["status"] == "enforced", j
        return (time.monotonic() - t) * 1000

    def measure(what):
        # The name is the certificate's (edge-py), and a new connection
        # with it replaces the old: connects first, then one data plane
        # that stays and acknowledges.
        connects = [connect_round() for _ in range(ROUNDS // 4)]
        dp = dpa.tls_connection(certs, port)
        dp.sendall(dpa.hello("edge-py"))
        acker = threading.Thread(target=dpa.acknowledge, args=(dp,), daemon=True)
        acker.start()
        try:
            enforced = [enforced_round() for _ in range(ROUNDS // 4)]
        finally:
            dpa.stop_acknowledging(dp, acker)
        print(f"data-plane port, {what}: a data plane's connect {summary(connects)}; "
              f"a grant or revoke ?wait=enforced {summary(enforced)}", flush=True)

    try:
        st, _, j = d.request("PUT", "/v1/bindings/100.64.0.10", {"subscriber": "cust-1"})
        assert st == 200, j
        measure("baseline")

        held = []
        for _ in range(2000):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", port))
            held.append(s)
        measure("during 2,000 connections from one address that never begin TLS")
        for s in held:
            s.close()

        stats_header = dpa.frame(0x03, b"")[:4] + struct.pack(">I", 700000)
        rounds = [itertools.count() for _ in range(4)]

        def one(i):
            s = dpa.tls_connection(certs, port, f"127.0.1.{i * 10 + next(rounds[i]) % 10 + 1}")
            try:
                s.sendall(stats_header)
                return dpa.read_frame(s)
            except ConnectionError:
                return None
            finally:
                s.close()

        attack = Attack(4, 1 << 20, one)
        silent = [dpa.tls_connection(certs, port, f"127.0.2.{i // 5 + 1}") for i in range(40)]
        assert eventually(lambda: len(attack.answers) >= 100 or attack.errors), attack.errors
        measure("during stats headers before hello from 4 attackers, 40 silent TLS connections")
        assert attack.running() and not attack.errors, attack.errors
        attack.finish()
        for s in silent:
            s.close()
        print(f"  ({len(attack.answers)} stats headers refused during that measurement)", flush=True)
    finally:
        d.cleanup()
        shutil.rmtree(certs, ignore_errors=True)


expensive_requests()
dataplane_port_attacks()

