#!/usr/bin/python3
"""consentd's mutual-TLS data-plane port under attack (issue 17, items 1 and
5; docs/protocol.md, "Limits before hello"): a real consentd on loopback
whose descriptor limit is 1,400 (soft and hard: it cannot raise it), and
2,000 TCP connections from one address that never begin a TLS handshake.
Before the fix the daemon ran out of descriptors: the API stopped answering
and a data plane with a certificate could not connect. Now the API answers,
a data plane connects and acknowledges while the attack holds, and RSS stays
within a bound.
"""
import itertools
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon  # noqa: E402
from daemon import PATIENCE, Attack, Daemon, eventually, rss_kib  # noqa: E402

ATTACKERS = 2000
NOFILE = 1400
# The attack may cost this much RSS at most. Before the fix each connection
# held about 100 KB until hello_timeout (2,000: about 200 MiB); now 8 are
# held (max_pending_per_address) and the rest closed at accept. 64 MiB leaves
# room for ASan's quarantine and allocator slack.
RSS_BOUND_KIB = 64 * 1024


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def make_certs(d):
    def key(name):
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{d}/{name}.key")

    key("ca")
    sh("openssl", "req", "-x509", "-new", "-key", f"{d}/ca.key", "-out", f"{d}/ca.crt", "-days", "2", "-subj",
       "/CN=test-ca")
    for name, cn, ext in (("server", "consentd", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                          ("edge", "edge-py", "extendedKeyUsage=clientAuth")):
        key(name)
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext + "\n")
        sh("openssl", "req", "-new", "-key", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", f"/CN={cn}")
        sh("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
           "-CAcreateserial", "-out", f"{d}/{name}.crt", "-days", "2", "-extfile", f"{d}/{name}.ext")


def frame(ftype, payload):
    return b"OG\x01" + bytes([ftype]) + struct.pack(">I", len(payload)) + payload


def hello(name):
    n = name.encode()
    return frame(0x01, bytes([len(n)]) + n + struct.pack(">Q", 0) + b"\x00")


def read_frame(s):
    head = b""
    while len(head) < 8:
        chunk = s.recv(8 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    length = struct.unpack(">I", head[4:8])[0]
    body = b""
    while len(body) < length:
        chunk = s.recv(min(65536, length - len(body)))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head[3], body


def acknowledge(s):
    """A data plane's acknowledgements, until the connection closes: the
    seq of each snapshot-end and final delta part, and again on heartbeats."""
    applied = None
    try:
        while True:
            ftype, body = read_frame(s)
            if ftype == 0x13 or (ftype == 0x14 and body[8] & 1):  # snapshot-end; a delta's final part
                applied = struct.unpack(">Q", body[:8])[0]
            elif ftype != 0x16:  # heartbeat: acknowledged below
                continue
            if applied is not None:
                s.sendall(frame(0x02, struct.pack(">Q", applied)))
    except (OSError, ValueError):
        pass


def stop_acknowledging(dp, acker):
    """Ends `acknowledge` on `dp` before closing it. Closed first, the
    descriptor could be reused by a new connection (an attacker's) while the
    acknowledging thread still reads from its number, taking that
    connection's bytes (its TLS handshake then fails)."""
    dp.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading: it sees the end
    acker.join(PATIENCE)
    dp.close()


def still_open(s):
    """Whether consentd has not closed TLS connection `s` (nothing to read;
    a session ticket is not the end)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except ssl.SSLWantReadError:
        return True
    except OSError:
        return False
    finally:
        s.settimeout(PATIENCE)


def tls_daemon(certs):
    """consentd with a mutual-TLS data-plane port (certificates from
    make_certs in `certs`) and a descriptor limit it cannot raise (NOFILE).
    Returns (daemon, the data-plane port)."""
    wrapper = os.path.join(certs, "consentd-limited")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nulimit -n {NOFILE} || exit 1\nexec '{daemon.CONSENTD}' \"$@\"\n")
    os.chmod(wrapper, 0o755)
    real = daemon.CONSENTD
    daemon.CONSENTD = wrapper
    try:
        d = Daemon(
            rss_bounded=True,
            limits="limits: {max_connections: 256}\n",
            # hello_timeout: the attack holds what it gets as long as the test runs.
            dataplanes=("{socket: dp.sock, hello_timeout: 10m, tcp: {address: 127.0.0.1, port: 0, tls: {"
                        f"certificate: {certs}/server.crt, private_key: {certs}/server.key, "
                        f"client_ca: {certs}/ca.crt}}}}}}"))
    finally:
        daemon.CONSENTD = real
    m = re.search(r"tcp 127\.0\.0\.1:(\d+) \(mutual TLS\)", d.read_log())
    assert m, d.read_log()
    return d, int(m.group(1))


def tls_connection(certs, port, source=None):
    """A TLS connection to the data-plane port with the data plane's
    certificate (from `source`, a loopback address, when given), handshake
    done, nothing said."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(f"{certs}/ca.crt")
    ctx.load_cert_chain(f"{certs}/edge.crt", f"{certs}/edge.key")
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if source:
        raw.bind((source, 0))
    raw.settimeout(PATIENCE)
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


class DataPlanePortAttackTest(unittest.TestCase):
    def setUp(self):
        self.certs = tempfile.mkdtemp(prefix="consentd-dp-certs-")
        make_certs(self.certs)
        self.d, self.dp_port = tls_daemon(self.certs)
        self.attack = []

    def tearDown(self):
        for s in self.attack:
            s.close()
        alive = self.d.alive()
        self.d.cleanup()
        subprocess.run(["rm", "-rf", self.certs])
        self.assertTrue(alive, "consentd died")

    def dataplane(self):
        s = tls_connection(self.certs, self.dp_port)
        s.sendall(hello("edge-py"))
        ftype, _ = read_frame(s)
        self.assertEqual(ftype, 0x10, "welcome")
        return s

    def test_unauthenticated_connections_do_not_starve_the_api_or_data_planes(self):
        pid = self.d.proc.pid
        # The wrapper exec'd consentd: the limit is its own.
        with open(f"/proc/{pid}/limits") as f:
            self.assertRegex(f.read(), rf"Max open files\s+{NOFILE}\s+{NOFILE}")
        st, _, _ = self.d.request("GET", "/healthz", token=None)
        self.assertEqual(st, 200)
        rss_before = rss_kib(pid)

        for _ in range(ATTACKERS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.2", 0))
            s.settimeout(PATIENCE)
            s.connect(("127.0.0.1", self.dp_port))
            self.attack.append(s)

        # While the attack holds: the API answers (before the fix: no answer,
        # every descriptor taken), a grant commits, and a data plane with a
        # certificate connects and acknowledges it.
        st, _, _ = self.d.request("GET", "/healthz", token=None)
        self.assertEqual(st, 200)
        self.assertTrue(eventually(lambda: (self.d.metric(
            'consentd_dataplane_connections_refused_total{reason="address_cap"}') or 0) >= ATTACKERS - 8))
        st, _, j = self.d.request("PUT", "/v1/bindings/100.64.0.10", {"subscriber": "cust-1"})
        self.assertEqual(st, 200, j)
        dp = self.dataplane()
        acker = threading.Thread(target=acknowledge, args=(dp,), daemon=True)
        acker.start()
        try:
            st, _, j = self.d.request("PUT", "/v1/subscribers/cust-1/consents/analytics?wait=enforced&timeout=60s",
                                      {"source": "portal", "notice_version": "v1"})
            self.assertEqual(st, 200, j)
            self.assertEqual(j["enforcement"]["status"], "enforced", j)
            self.assertEqual([p["name"] for p in j["enforcement"]["dataplanes"]], ["edge-py"], j)
        finally:
            stop_acknowledging(dp, acker)
        # The 8 it holds (fewer once handshake_timeout closed them).
        self.assertLessEqual(self.d.metric("consentd_dataplane_pending_connections"), 8)
        grown = rss_kib(pid) - rss_before
        print(f"RSS {rss_before} KiB before the attack, +{grown} KiB during it", file=sys.stderr)
        self.assertLess(grown, RSS_BOUND_KIB)
        self.assertNotIn("Too many open files", self.d.read_log())
        # One log line per interval, not one per connection.
        self.assertLess(self.d.read_log().count("address_cap"), 10)

    def tls(self, source):
        return tls_connection(self.certs, self.dp_port, source)

    def test_frames_before_hello_take_no_slot_and_no_memory(self):
        # Item 5: 300 connections that sent a stats header announcing 700 KB
        # and never a hello took every data-plane slot and 173 MiB. Four
        # attackers with a valid certificate connect again and again from
        # 40 loopback addresses (under max_pending_per_address), each sending
        # such a header and nothing more, and 40 more connections
        # that complete the handshake and say nothing; a data plane connects
        # and acknowledges a grant while they go on. Measured: +5.7 MiB for
        # 330 headers and the 40 (gcc -O2). Bound: 64 MiB (RSS_BOUND_KIB),
        # as for the attack above; before the fix, 300 such headers: +173 MiB.
        pid = self.d.proc.pid
        rss_before = rss_kib(pid)
        stats_header = frame(0x03, b"")[:4] + struct.pack(">I", 700000)
        rounds = [itertools.count() for _ in range(4)]

        def one(i):
            # Ten addresses each, in turn: under max_pending_per_address.
            s = self.tls(f"127.0.1.{i * 10 + next(rounds[i]) % 10 + 1}")
            try:
                s.sendall(stats_header)
                return read_frame(s)
            except ConnectionError:
                return None  # closed without the goodbye: see below
            finally:
                s.close()

        attack = Attack(4, 1000, one)
        silent = []
        try:
            for i in range(40):
                silent.append(self.tls(f"127.0.2.{i // 5 + 1}"))
            self.assertTrue(eventually(lambda: len(attack.answers) >= 300 or attack.errors), attack.errors)
            st, _, j = self.d.request("PUT", "/v1/bindings/100.64.0.11", {"subscriber": "cust-2"})
            self.assertEqual(st, 200, j)
            dp = self.dataplane()
            acker = threading.Thread(target=acknowledge, args=(dp,), daemon=True)
            acker.start()
            try:
                st, _, j = self.d.request("PUT", "/v1/subscribers/cust-2/consents/analytics?wait=enforced&timeout=60s",
                                          {"source": "portal", "notice_version": "v1"})
                self.assertEqual(st, 200, j)
                self.assertEqual(j["enforcement"]["status"], "enforced", j)
                self.assertEqual([p["name"] for p in j["enforcement"]["dataplanes"]], ["edge-py"], j)
                # While the attack goes on: the attackers still connect, the
                # silent connections are still open (nothing to read).
                self.assertTrue(attack.running(), "the attack is not in progress any more")
                self.assertEqual(sum(map(still_open, silent)), len(silent))
                grown = rss_kib(pid) - rss_before
                print(f"RSS {rss_before} KiB before, +{grown} KiB with {len(attack.answers)} stats headers before "
                      f"hello and {len(silent)} silent connections", file=sys.stderr)
                self.assertLess(grown, RSS_BOUND_KIB)
            finally:
                stop_acknowledging(dp, acker)
        finally:
            attack.finish()
            for s in silent:
                s.close()
        self.assertEqual(attack.errors, [])
        # Each refused before its payload was read, with a goodbye that says
        # why.
        goodbyes = [g for g in attack.answers if g]
        self.assertEqual(len(goodbyes), len(attack.answers))
        for ftype, body in goodbyes:
            self.assertEqual(ftype, 0x20, "goodbye")
            self.assertIn(b"a stats frame of 700008 bytes before hello", body)
        self.assertGreaterEqual(self.d.metric('consentd_dataplane_connections_refused_total{reason="before_hello"}'),
                                len(attack.answers))


if __name__ == "__main__":
    unittest.main(verbosity=2)
