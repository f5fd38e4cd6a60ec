#!/usr/bin/python3
"""consentd's RADIUS accounting listener (docs/radius.md), driven by the real
client radclient (Debian freeradius-utils) and, for what radclient cannot
send (malformed packets, other sources, exact retransmissions), by raw
datagrams built here.

Every case checks what the ledger holds afterwards through the API, and the
per-client counters in GET /metrics. Drops are observed through their
counter (polled, no timing assumption), never by waiting for silence.

Environment: as daemon.py, plus RADCLIENT (default /usr/bin/radclient).
"""
import hashlib
import hmac
import ipaddress
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import Daemon  # noqa: E402

RADCLIENT = os.environ.get("RADCLIENT", "/usr/bin/radclient")
SECRET = "bng-1-secret-0123456789"
POOL_SECRET = "pool-secret-0123456789"
RADIUS_CONFIG = f"""radius:
  listen: {{address: 127.0.0.1, port: 0}}
  clients:
    - {{name: bng-1, address: 127.0.0.1, secret: "{SECRET}"}}
    - {{name: pool, address: 127.0.1.0/24, secret: "{POOL_SECRET}"}}
  subscriber:
    attribute: User-Name
    rewrite: {{match: '^([^@]+)@.*$', replace: '$1'}}
  max_delegated_keys: 256
"""
DEADLINE = 60  # seconds: generous, the suite runs on a busy machine and under ASan

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


# ---- RADIUS by hand (RFC 2865/2866), for what radclient will not send ----

def attr(t, value):
    if isinstance(value, str):
        value = value.encode()
    return bytes([t, len(value) + 2]) + value


def u32(t, n):
    return attr(t, struct.pack("!I", n))


def ipv4(t, text):
    return attr(t, ipaddress.IPv4Address(text).packed)


def ipv6_prefix(t, text):
    n = ipaddress.IPv6Network(text)
    return attr(t, bytes([0, n.prefixlen]) + n.network_address.packed[:(n.prefixlen + 7) // 8])


def acct_request(attrs, secret, ident=7, message_authenticator=False, length=None, code=4):
    """An Accounting-Request with a right Request Authenticator (and
    Message-Authenticator when asked); `length` overrides the Length field
    (the authenticator still covers the bytes sent)."""
    if message_authenticator:
        attrs += attr(80, b"\0" * 16)
    real = 20 + len(attrs)
    head = bytes([code, ident]) + struct.pack("!H", length if length is not None else real)
    if message_authenticator:
        mac = hmac.new(secret.encode(), head + b"\0" * 16 + attrs, hashlib.md5).digest()
        attrs = attrs[:-16] + mac
    auth = hashlib.md5(head + b"\0" * 16 + attrs + secret.encode()).digest()
    return head + auth + attrs


def response_ok(answer, request, secret):
    want = hashlib.md5(answer[:4] + request[4:20] + answer[20:] + secret.encode()).digest()
    return len(answer) == 20 and answer[0] == 5 and answer[1] == request[1] and answer[4:20] == want


class Raw:
    """A UDP socket from a chosen loopback source."""

    def __init__(self, port, source="127.0.0.1"):
        self.port = port
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((source, 0))

    def send(self, data):
        self.s.sendto(data, ("127.0.0.1", self.port))

    def exchange(self, data):
        self.send(data)
        self.s.settimeout(DEADLINE)
        return self.s.recv(4096)

    def close(self):
        self.s.close()


# ---- the daemon's side ----

def radius_port(d):
    with open(d.port_file + ".radius") as f:
        return int(f.read())


def radclient(d, attrs, secret=SECRET, timeout=DEADLINE, retries=1):
    text = ", ".join(attrs) + "\n"
    return subprocess.run([RADCLIENT, "-x", "-r", str(retries), "-t", str(timeout),
                           f"127.0.0.1:{radius_port(d)}", "acct", secret],
                          input=text, capture_output=True, text=True, timeout=timeout * (retries + 1) + 30)


def answered(r):
    return r.returncode == 0 and "Received Accounting-Response" in r.stdout


def metric(d, line):
    v = d.metric(line)
    return 0 if v is None else v


def wait_metric(d, line, at_least):
    deadline = time.time() + DEADLINE
    while time.time() < deadline:
        if metric(d, line) >= at_least:
            return True
        time.sleep(0.05)
    return False


def bindings(d, subscriber):
    status, _, body = d.request("GET", f"/v1/subscribers/{subscriber}?history=1000", token="auditor")
    if status == 404:
        return set()
    return {b["address"] for b in body["bindings"]}


def history(d, subscriber):
    status, _, body = d.request("GET", f"/v1/subscribers/{subscriber}?history=1000", token="auditor")
    return [] if status == 404 else body["history"]


def head(d):
    return metric(d, "consentd_ledger_head_seq")


def session_of(d, seq):
    db = sqlite3.connect(f"file:{d.db}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT client, nas, session_id FROM radius_events WHERE seq = ?", (seq,)).fetchone()
    finally:
        db.close()
    return row


def start_attrs(user, session, *addresses, status="Start", nas=None):
    a = [f"Acct-Status-Type = {status}", f'User-Name = "{user}"', f'Acct-Session-Id = "{session}"']
    if nas:
        a.append(f'NAS-Identifier = "{nas}"')
    return a + list(addresses)


# ---- cases ----

def test_start_interim_stop_ipv4(d):
    before = head(d)
    r = radclient(d, start_attrs("cust-1@isp.example", "s-1", "Framed-IP-Address = 100.64.1.1"))
    check(answered(r), "Start answered: " + r.stdout + r.stderr)
    check(bindings(d, "cust-1") == {"100.64.1.1"}, "Start binds 100.64.1.1 to cust-1 (realm stripped)")
    h = history(d, "cust-1")
    check(len(h) == 1 and h[0]["action"] == "bind" and h[0]["source"] == "radius:bng-1"
          and h[0]["credential"] == "radius:bng-1", f"one bind event from radius:bng-1: {h}")
    check(h and session_of(d, h[0]["seq"]) == ("bng-1", "", "s-1"), "the event's Acct-Session-Id is kept")
    check(head(d) == before + 1, "one event")

    r = radclient(d, start_attrs("cust-1@isp.example", "s-1", "Framed-IP-Address = 100.64.1.1",
                                 status="Interim-Update"))
    check(answered(r), "Interim-Update answered")
    check(head(d) == before + 1, "an Interim-Update repeating the Start records nothing")
    check(metric(d, 'consentd_radius_requests_total{client="bng-1",status="interim_update"}') == 1,
          "Interim-Update counted")

    r = radclient(d, start_attrs("cust-1@isp.example", "s-1", "Framed-IP-Address = 100.64.1.1", status="Stop"))
    check(answered(r), "Stop answered")
    check(bindings(d, "cust-1") == set(), "Stop unbinds")
    h = history(d, "cust-1")
    check(h[-1]["action"] == "unbind" and h[-1]["source"] == "radius:bng-1", "the unbind event's source")
    check(metric(d, 'consentd_radius_bindings_total{client="bng-1",action="bind"}') >= 1, "bindings counted")


def test_interim_binds_a_new_address(d):
    radclient(d, start_attrs("cust-2", "s-2", "Framed-IP-Address = 100.64.2.1"))
    r = radclient(d, start_attrs("cust-2", "s-2", "Framed-IP-Address = 100.64.2.1",
                                 'Framed-IPv6-Prefix = 2001:db8:1000:2::/64', status="Interim-Update"))
    check(answered(r), "Interim-Update answered")
    check(bindings(d, "cust-2") == {"100.64.2.1", "2001:db8:1000:2::/64"},
          "an Interim-Update with a new address binds it")


def test_ipv6_framed_and_delegated(d):
    r = radclient(d, start_attrs("cust-6", "s-6", "Framed-IPv6-Prefix = 2001:db8:1000:6::/64",
                                 "Delegated-IPv6-Prefix = 2001:db8:1000:600::/56",
                                 "Framed-IPv6-Address = 2001:db8:1000:7::1"))
    check(answered(r), "IPv6 Start answered: " + r.stdout + r.stderr)
    b = bindings(d, "cust-6")
    delegated = {f"2001:db8:1000:6{i:02x}::/64" for i in range(256)}
    check(b == {"2001:db8:1000:6::/64", "2001:db8:1000:7::/64"} | delegated,
          f"framed /64, the address's /64 and every /64 of the delegated /56 bound ({len(b)} bindings)")
    r = radclient(d, start_attrs("cust-6", "s-6", "Framed-IPv6-Prefix = 2001:db8:1000:6::/64", status="Stop"))
    check(answered(r) and bindings(d, "cust-6") == set(),
          "Stop unbinds all 258, also those it does not repeat")
    # Too short for max_delegated_keys: answered, nothing bound, counted.
    r = radclient(d, start_attrs("cust-7", "s-7", "Delegated-IPv6-Prefix = 2001:db8:1000:8000::/48"))
    check(answered(r) and bindings(d, "cust-7") == set(), "a /48 (65536 keys) is not bound")
    check(metric(d, 'consentd_radius_skipped_total{client="bng-1",reason="prefix_too_short"}') == 1,
          "prefix_too_short counted")


def test_stop_after_reassignment(d):
    radclient(d, start_attrs("cust-a", "s-a", "Framed-IP-Address = 100.64.3.3"))
    r = radclient(d, start_attrs("cust-b", "s-b", "Framed-IP-Address = 100.64.3.3"))
    check(answered(r) and bindings(d, "cust-b") == {"100.64.3.3"} and bindings(d, "cust-a") == set(),
          "a Start for another session moves the address")
    before = head(d)
    r = radclient(d, start_attrs("cust-a", "s-a", "Framed-IP-Address = 100.64.3.3", status="Stop"))
    check(answered(r), "the late Stop is answered")
    check(bindings(d, "cust-b") == {"100.64.3.3"} and head(d) == before,
          "a Stop of the old session does not unbind the new holder")
    # The same subscriber, a new session on the same address: the old
    # session's Stop must not end the new one either.
    radclient(d, start_attrs("cust-b", "s-b2", "Framed-IP-Address = 100.64.3.3"))
    radclient(d, start_attrs("cust-b", "s-b", "Framed-IP-Address = 100.64.3.3", status="Stop"))
    check(bindings(d, "cust-b") == {"100.64.3.3"}, "a Stop of the subscriber's previous session changes nothing")
    # Rebound through the API: the session no longer holds it.
    d.request("PUT", "/v1/bindings/100.64.3.3", {"subscriber": "cust-b", "source": "portal"})
    before = head(d)
    radclient(d, start_attrs("cust-b", "s-b2", "Framed-IP-Address = 100.64.3.3", status="Stop"))
    check(bindings(d, "cust-b") == {"100.64.3.3"} and head(d) == before,
          "a Stop after an API rebind of the address changes nothing")


def test_accounting_on_off(d):
    radclient(d, start_attrs("cust-n1", "n1", "Framed-IP-Address = 100.64.4.1", nas="nas-1"))
    radclient(d, start_attrs("cust-n2", "n2", "Framed-IP-Address = 100.64.4.2", nas="nas-1"))
    radclient(d, start_attrs("cust-n3", "n3", "Framed-IP-Address = 100.64.4.3", nas="nas-2"))
    r = radclient(d, ["Acct-Status-Type = Accounting-On", 'NAS-Identifier = "nas-1"'])
    check(answered(r), "Accounting-On answered")
    check(bindings(d, "cust-n1") == set() and bindings(d, "cust-n2") == set(),
          "Accounting-On unbinds what that NAS's sessions bound")
    check(bindings(d, "cust-n3") == {"100.64.4.3"}, "another NAS's sessions stay")
    r = radclient(d, ["Acct-Status-Type = Accounting-Off", 'NAS-Identifier = "nas-2"'])
    check(answered(r) and bindings(d, "cust-n3") == set(), "Accounting-Off unbinds too")


def test_retransmission(d):
    raw = Raw(radius_port(d))
    try:
        req = acct_request(u32(40, 1) + attr(1, "cust-r") + attr(44, "s-r") + ipv4(8, "100.64.5.5"), SECRET, ident=42)
        before = head(d)
        a1 = raw.exchange(req)
        a2 = raw.exchange(req)
        check(response_ok(a1, req, SECRET) and a1 == a2, "a retransmission gets the same answer")
        check(head(d) == before + 1, "and no second event")
        check(metric(d, 'consentd_radius_retransmissions_total{client="bng-1"}') >= 1, "retransmission counted")
        # Sent twice at once: one event either way.
        req = acct_request(u32(40, 1) + attr(1, "cust-r2") + attr(44, "s-r2") + ipv4(8, "100.64.5.6"), SECRET,
                           ident=43)
        raw.send(req)
        a = raw.exchange(req)
        check(response_ok(a, req, SECRET), "answered")
        check(len([e for e in history(d, "cust-r2") if e["action"] == "bind"]) == 1, "one bind for two copies")
    finally:
        raw.close()


def test_burst(d):
    """200 requests sent at once queue in the socket: read in bursts, committed
    in shared batches, and each answered once, only after its bind is in."""
    raw = Raw(radius_port(d))
    try:
        before = head(d)
        reqs = {}
        for i in range(200):
            reqs[i] = acct_request(u32(40, 1) + attr(1, f"cust-burst-{i % 10}") + attr(44, f"s-burst-{i}") +
                                   ipv4(8, f"100.64.20.{i + 1}"), SECRET, ident=i)
        for req in reqs.values():
            raw.send(req)
        raw.s.settimeout(DEADLINE)
        answers = {}
        while len(answers) < len(reqs):
            try:
                a = raw.s.recv(4096)
            except socket.timeout:
                break
            check(a[1] not in answers, f"request {a[1]} answered once")
            answers[a[1]] = a
        check(sorted(answers) == sorted(reqs), f"every request answered ({len(answers)} of {len(reqs)})")
        check(all(response_ok(answers[i], reqs[i], SECRET) for i in answers), "each answer authenticates")
        bound = set()
        for n in range(10):
            bound |= bindings(d, f"cust-burst-{n}")
        check(bound == {f"100.64.20.{i + 1}" for i in range(200)}, "every address bound to its subscriber")
        check(head(d) == before + 200, "one event per request")
    finally:
        raw.close()


def test_message_authenticator(d):
    r = radclient(d, start_attrs("cust-m", "s-m", "Framed-IP-Address = 100.64.6.6", "Message-Authenticator = 0x00"))
    check(answered(r) and bindings(d, "cust-m") == {"100.64.6.6"}, "a right Message-Authenticator is accepted")
    raw = Raw(radius_port(d))
    try:
        req = bytearray(acct_request(u32(40, 1) + attr(1, "cust-m2") + attr(44, "s-m2") + ipv4(8, "100.64.6.7"),
                                     SECRET, message_authenticator=True))
        req[-1] ^= 1  # a wrong HMAC, then a Request Authenticator that covers it
        req[4:20] = hashlib.md5(bytes(req[:4]) + b"\0" * 16 + bytes(req[20:]) + SECRET.encode()).digest()
        raw.send(bytes(req))
        check(wait_metric(d, 'consentd_radius_drops_total{client="bng-1",reason="bad_message_authenticator"}', 1),
              "a wrong Message-Authenticator is dropped and counted")
        check(bindings(d, "cust-m2") == set(), "nothing bound")
    finally:
        raw.close()


def test_wrong_secret_and_unknown_client(d):
    before = head(d)
    r = radclient(d, start_attrs("cust-w", "s-w", "Framed-IP-Address = 100.64.7.7"),
                  secret="not-the-secret-0123456789", timeout=1, retries=1)
    check(not answered(r), "a wrong secret gets no answer")
    check(wait_metric(d, 'consentd_radius_drops_total{client="bng-1",reason="bad_authenticator"}', 1),
          "bad_authenticator counted")
    raw = Raw(radius_port(d), source="127.0.0.2")
    try:
        raw.send(acct_request(u32(40, 1) + attr(1, "cust-u") + attr(44, "s-u") + ipv4(8, "100.64.7.8"), SECRET))
        check(wait_metric(d, 'consentd_radius_drops_total{client="(unknown)",reason="unknown_client"}', 1),
              "an unknown client is dropped and counted")
    finally:
        raw.close()
    check(head(d) == before and bindings(d, "cust-w") == set() and bindings(d, "cust-u") == set(),
          "nothing bound")
    # A client matched by prefix, with its own secret and name.
    raw = Raw(radius_port(d), source="127.0.1.5")
    try:
        req = acct_request(u32(40, 1) + attr(1, "cust-p") + attr(44, "s-p") + ipv4(8, "100.64.7.9"), POOL_SECRET)
        check(response_ok(raw.exchange(req), req, POOL_SECRET), "a client by prefix is answered with its secret")
        check(history(d, "cust-p")[0]["source"] == "radius:pool", "its events carry its name")
    finally:
        raw.close()


def test_malformed(d):
    base = u32(40, 1) + attr(1, "cust-x") + attr(44, "s-x") + ipv4(8, "100.64.8.8")
    cases = {
        "truncated": acct_request(base, SECRET, length=20 + len(base) + 10),  # shorter than its Length
        "attribute_overrun": acct_request(base + bytes([1, 40]) + b"abc", SECRET),  # runs past the packet
        "attribute_too_short": acct_request(base + bytes([1, 0]), SECRET),  # a zero length byte
        "too_short": b"\x04\x01\x00\x14" + b"\0" * 10,
        "bad_length": acct_request(base, SECRET, length=5000),
        "not_accounting_request": acct_request(base, SECRET, code=1),
        "no_status_type": acct_request(attr(1, "cust-x") + attr(44, "s-x") + ipv4(8, "100.64.8.8"), SECRET),
        "no_session_id": acct_request(u32(40, 1) + attr(1, "cust-x") + ipv4(8, "100.64.8.8"), SECRET),
    }
    before = head(d)
    raw = Raw(radius_port(d))
    try:
        for reason, data in cases.items():
            line = f'consentd_radius_drops_total{{client="bng-1",reason="{reason}"}}'
            n = metric(d, line)
            raw.send(data)
            check(wait_metric(d, line, n + 1), f"{reason}: dropped and counted")
        # A single attribute length byte of 1 too.
        line = 'consentd_radius_drops_total{client="bng-1",reason="attribute_too_short"}'
        n = metric(d, line)
        raw.send(acct_request(base + bytes([1, 1]), SECRET))
        check(wait_metric(d, line, n + 1), "attribute length 1: dropped and counted")
    finally:
        raw.close()
    check(head(d) == before and bindings(d, "cust-x") == set(), "nothing bound from malformed packets")
    check(d.alive(), "consentd still running")


def test_answered_without_binding(d):
    raw = Raw(radius_port(d))
    try:
        cases = {
            "no_address": u32(40, 1) + attr(1, "cust-y") + attr(44, "s-y1"),
            "not_subscriber_address": u32(40, 1) + attr(1, "cust-y") + attr(44, "s-y2") + ipv4(8, "198.18.0.5"),
            "no_subscriber": u32(40, 1) + attr(1, "") + attr(44, "s-y3") + ipv4(8, "100.64.9.9"),  # empty = absent
            "bad_subscriber": u32(40, 1) + attr(1, "a b") + attr(44, "s-y4") + ipv4(8, "100.64.9.9"),
            "other_status": u32(40, 99) + attr(1, "cust-y") + attr(44, "s-y5") + ipv4(8, "100.64.9.9"),
        }
        before = head(d)
        for reason, attrs in cases.items():
            req = acct_request(attrs, SECRET)
            check(response_ok(raw.exchange(req), req, SECRET), f"{reason}: answered")
            check(metric(d, f'consentd_radius_skipped_total{{client="bng-1",reason="{reason}"}}') == 1,
                  f"{reason}: counted")
        check(head(d) == before, "nothing bound")
    finally:
        raw.close()


def test_restart(d):
    """The session table is durable: a Stop after a restart finds its session."""
    radclient(d, start_attrs("cust-z", "s-z", "Framed-IP-Address = 100.64.11.1"))
    check(bindings(d, "cust-z") == {"100.64.11.1"}, "bound before the restart")
    d.stop()
    d.start()
    r = radclient(d, start_attrs("cust-z", "s-z", "Framed-IP-Address = 100.64.11.1", status="Stop"))
    check(answered(r) and bindings(d, "cust-z") == set(), "a Stop after a restart unbinds")


def main():
    d = Daemon(limits=RADIUS_CONFIG)
    try:
        for t in (test_start_interim_stop_ipv4, test_interim_binds_a_new_address, test_ipv6_framed_and_delegated,
                  test_stop_after_reassignment, test_accounting_on_off, test_retransmission, test_burst,
                  test_message_authenticator, test_wrong_secret_and_unknown_client, test_malformed,
                  test_answered_without_binding, test_restart):
            print("---", t.__name__, flush=True)
            t(d)
        check(d.alive(), "consentd still running at the end")
        # The listener is off without a radius section: no port file for it.
        plain = Daemon()
        try:
            check(not os.path.exists(plain.port_file + ".radius"), "no RADIUS listener by default")
        finally:
            plain.cleanup()
    finally:
        d.cleanup()
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("radius: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
