#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora: tests/fuzz/corpus/<target>/<name>.

    /usr/bin/python3 tests/fuzz/make_corpus.py      # rewrites every seed

Seeds are small, readable inputs that reach each parser's interesting
states; libFuzzer grows from them. Frames are built with scapy (Debian's
python3-scapy, hence /usr/bin/python3), with explicit Ethernet addresses and
the project's test addresses only. Each target's input format is described
at the top of tests/fuzz/fuzz_<target>.cpp. Files are rewritten, never
appended to; seeds that are no longer written here must be deleted by hand.
"""

import os
import struct
import sys

from scapy.all import DNS, DNSQR, DNSRROPT, EDNS0TLV, Ether, IP, IPv6, IPv6ExtHdrFragment, \
    IPv6ExtHdrHopByHop, Raw, TCP, UDP, Dot1Q  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SRC_MAC, DST_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def eth(*layers, vlan=None):
    p = Ether(src=SRC_MAC, dst=DST_MAC)
    if vlan is not None:
        p = p / Dot1Q(vlan=vlan)
    for layer in layers:
        p = p / layer
    return bytes(p)


# ---------------------------------------------------------------- requests

REQ_UIDH = ("GET /ad?slot=7 HTTP/1.1\r\nHost: ads.example.net\r\nX-UIDH: OTgxNTk2NDk0ADJVquRu5NS5\r\n"
            "x-msisdn:12075550123\r\n   +1 207\r\nAccept: */*\r\n\r\n")
REQ_PIPELINE = ("POST /a HTTP/1.1\r\nContent-Length: 30\r\nX-UIDH: first\r\n\r\n"
                "X-UIDH: in-the-body-not-a-fie\r\n"
                "GET /b HTTP/1.1\r\nX-MSISDN: second\r\n\r\n")
REQ_CHUNKED = ("PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5;ext=\"a b\"\r\nhello\r\n0\r\nX-UIDH: in-a-trailer\r\n\r\n"
               "GET /d HTTP/1.0\nX-UIDH: bare-lf\n\n")
REQ_ODD = ("\r\nGET http://ads.example.net/ HTTP/1.1\r\nX-UIDH : space-before-colon\r\n"
           "X-Uidh:\tvalue\rwith-bare-cr\r\nHost: a\r\nHost: b\r\n\r\n")
REQ_CONNECT = "CONNECT ads.example.net:443 HTTP/1.1\r\nX-UIDH: connect\r\n\r\n\x16\x03\x01 X-UIDH: tunnel\r\n"
REQ_UPGRADE = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nX-MSISDN: 1\r\n\r\nX-MSISDN: after-upgrade\r\n"
REQ_MIDSTREAM = "lue-of-something\r\nX-UIDH: midstream\r\n\tfolded\r\nAccept: */*\r\n\r\n"
REQ_H2 = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nX-UIDH: h2\r\n"


def packet_corpus():
    t = "packet"
    sub, nocons, adnet = "100.64.0.12", "100.64.0.12", "203.0.113.5"
    write(t, "http-syn-data", eth(IP(src=nocons, dst=adnet) / TCP(sport=40000, dport=80, flags="S", seq=1000)
                                  / Raw(REQ_UIDH.encode())))
    write(t, "http-midstream", eth(IP(src=nocons, dst=adnet) / TCP(sport=40001, dport=80, flags="PA", seq=5)
                                   / Raw(REQ_MIDSTREAM.encode())))
    write(t, "http-pass", eth(IP(src="100.64.0.10", dst=adnet) / TCP(sport=40002, dport=80, flags="S")
                              / Raw(REQ_UIDH.encode())))
    write(t, "http-v6-vlan-8080", eth(IPv6(src="2001:db8:1000:2::7", dst="2001:db8:ad::80")
                                      / TCP(sport=40003, dport=8080, flags="S") / Raw(REQ_PIPELINE.encode()),
                                      vlan=10))
    write(t, "http-v6-hbh", eth(IPv6(src="2001:db8:1000:2::7", dst="2001:db8:ad::80") / IPv6ExtHdrHopByHop()
                                / TCP(sport=40004, dport=80, flags="PA") / Raw(REQ_ODD.encode())))
    write(t, "http-ipv4-options", eth(IP(src="100.64.0.99", dst="198.51.100.7", options=b"\x01\x01\x01\x00")
                                      / TCP(sport=40005, dport=80, flags="S") / Raw(REQ_CHUNKED.encode())))
    write(t, "http-rst", eth(IP(src=nocons, dst=adnet) / TCP(sport=40006, dport=80, flags="R")
                             / Raw(b"X-UIDH: on-a-reset\r\n")))
    write(t, "http-fragment", eth(IP(src=nocons, dst=adnet, flags="MF", id=7) / TCP(sport=40007, dport=80, flags="S")
                                  / Raw(REQ_UIDH[:40].encode())))
    write(t, "http-v6-fragment", eth(IPv6(src="2001:db8:1000:2::7", dst="2001:db8:ad::80")
                                     / IPv6ExtHdrFragment(m=1, id=9) / TCP(sport=40008, dport=80) / Raw(b"X-UIDH: f\r\n")))
    write(t, "http-from-internet", eth(IP(src=adnet, dst=sub) / TCP(sport=80, dport=80, flags="PA")
                                       / Raw(b"X-UIDH: downstream\r\n")))
    write(t, "http-bad-checksum", eth(IP(src=nocons, dst=adnet) / TCP(sport=40009, dport=80, flags="S", chksum=0x1234)
                                      / Raw(REQ_CONNECT.encode())))
    q = DNS(id=1, rd=1, qd=DNSQR(qname="example.com"),
            ar=DNSRROPT(rclass=1232, rdata=[EDNS0TLV(optcode=8, optdata=b"\x00\x01\x18\x00\x64\x40\x00"),
                                           EDNS0TLV(optcode=10, optdata=b"12345678"),
                                           EDNS0TLV(optcode=65001, optdata=b"\x02\x00\x00\x00\x00\x01")]))
    write(t, "dns-ecs", eth(IP(src=nocons, dst="198.18.0.53") / UDP(sport=40000, dport=53) / Raw(bytes(q))))
    write(t, "dns-ecs-v6", eth(IPv6(src="2001:db8:1000:2::5", dst="2001:db8:ad::53") / UDP(sport=40000, dport=53)
                               / Raw(bytes(q))))
    write(t, "dns-pass", eth(IP(src="100.64.0.10", dst="198.18.0.53") / UDP(sport=40000, dport=53) / Raw(bytes(q))))
    write(t, "dns-nochecksum-trailer", eth(IP(src=nocons, dst="198.18.1.1") / UDP(sport=40000, dport=53, chksum=0)
                                           / Raw(bytes(q))) + b"\x00" * 6)
    write(t, "udp-other", eth(IP(src=nocons, dst=adnet, tos=0xb8) / UDP(sport=40000, dport=4500) / Raw(b"x" * 10)))
    write(t, "arp", bytes(Ether(src=SRC_MAC, dst=DST_MAC, type=0x0806)) + b"\x00\x01" * 14)
    write(t, "qinq", bytes(Ether(src=SRC_MAC, dst=DST_MAC, type=0x88a8) / Dot1Q(vlan=10, type=0x8100) / Dot1Q(vlan=20)
                           / IP(src=nocons, dst=adnet) / TCP(sport=40010, dport=80, flags="S") / Raw(b"GET / HTTP/1.1\r\nX-UIDH: q\r\n\r\n")))


def encapsulated_corpus():
    """One seed per encapsulation (docs/pipeline.md#encapsulations; every
    encapsulation is on in the packet rig): an HTTP strip request and an
    EDNS0 client subnet query inside each, over outer IPv4 and IPv6."""
    from scapy.all import GRE, HDLC, PPP, PPPoE  # noqa: E402
    from scapy.contrib.geneve import GENEVE  # noqa: E402
    from scapy.contrib.gtp import GTP_U_Header  # noqa: E402
    from scapy.contrib.mpls import MPLS  # noqa: E402
    from scapy.layers.l2tp import L2TP  # noqa: E402
    from scapy.layers.vxlan import VXLAN  # noqa: E402
    t = "packet"
    inner_mac = dict(src="02:00:00:00:0c:01", dst="02:00:00:00:0c:02")
    http = IP(src="100.64.0.12", dst="203.0.113.5") / TCP(sport=40100, dport=80, flags="S") / Raw(REQ_UIDH.encode())
    q = DNS(id=1, rd=1, qd=DNSQR(qname="example.com"),
            ar=DNSRROPT(rclass=1232, rdata=[EDNS0TLV(optcode=8, optdata=b"\x00\x01\x18\x00\x64\x40\x00"),
                                           EDNS0TLV(optcode=10, optdata=b"12345678")]))
    dns6 = IPv6(src="2001:db8:1000:2::5", dst="2001:db8:ad::53") / UDP(sport=40101, dport=53) / Raw(bytes(q))
    o4 = IP(src="198.18.5.1", dst="198.18.5.2")
    o6 = IPv6(src="2001:db8:ad:ff::1", dst="2001:db8:ad:ff::2")
    e = Ether(src=SRC_MAC, dst=DST_MAC)
    seeds = {
        "pppoe": lambda i, o: e / PPPoE(sessionid=0x2a) / PPP(proto=0x57 if IPv6 in i else 0x21) / i,
        "mpls": lambda i, o: e / MPLS(label=16, s=0, ttl=64) / MPLS(label=17, s=1, ttl=64) / i,
        "gre-checksum-key": lambda i, o: e / o / GRE(chksum_present=1, key_present=1, key=7) / i,
        "gre-teb": lambda i, o: e / o / GRE(proto=0x6558) / Ether(**inner_mac) / i,
        "l2tp": lambda i, o: e / o / UDP(sport=1701, dport=1701) / L2TP(hdr="length", tunnel_id=3, session_id=4)
        / HDLC() / PPP() / i,
        "vxlan": lambda i, o: e / o / UDP(sport=49152, dport=4789) / VXLAN(flags=0x08, NextProtocol=0, vni=42)
        / Ether(**inner_mac) / i,
        "geneve": lambda i, o: e / o / UDP(sport=49153, dport=6081)
        / GENEVE(vni=5, proto=0x6558, optionlen=1, options=bytes(4)) / Ether(**inner_mac) / i,
        "gtpu": lambda i, o: e / o / UDP(sport=2152, dport=2152) / GTP_U_Header(teid=9, gtp_type=255, S=1, seq=3) / i,
    }
    for name, wrap in seeds.items():
        write(t, "encap-%s-http" % name, bytes(wrap(http, o4)))
        write(t, "encap-%s-dns-v6" % name, bytes(wrap(dns6, o6)))
    # Nested: PPPoE inside VXLAN, GTP-U over MPLS.
    write(t, "encap-vxlan-pppoe", bytes(seeds["vxlan"](PPPoE(sessionid=1) / PPP(proto=0x21) / http, o4)))
    write(t, "encap-mpls-gtpu", bytes(e / MPLS(label=20, s=1, ttl=64) / o4 / UDP(sport=2152, dport=2152)
                                      / GTP_U_Header(teid=1, gtp_type=255) / http))


# ---------------------------------------------------------------- http

def http_input(stream, flags=0, lengths=(16,), more=0):
    """more: byte 1's flags above the length count (0x10 out of order, 0x20 late resend)."""
    return bytes([flags, (len(lengths) - 1) | more]) + bytes(n - 1 for n in lengths) + stream.encode("latin-1")


def http_corpus():
    t = "http"
    write(t, "uidh-syn", http_input(REQ_UIDH, 0, (7, 30, 1, 60)))
    write(t, "uidh-tfo-v6", http_input(REQ_UIDH, 0x01 | 0x02, (40,)))
    write(t, "midstream", http_input(REQ_MIDSTREAM, 0x04, (3, 11)))
    write(t, "retransmit-fin", http_input(REQ_PIPELINE, 0x06 | 0x08, (13, 5)))
    write(t, "pipeline-one-burst", http_input(REQ_PIPELINE, 0x40, (1,)))
    write(t, "chunked-vlan-8080", http_input(REQ_CHUNKED, 0x20 | 0x80, (9, 2, 100)))
    write(t, "odd-lines", http_input(REQ_ODD, 0, (5, 6, 7)))
    write(t, "connect", http_input(REQ_CONNECT, 0x40, (20,)))
    write(t, "upgrade", http_input(REQ_UPGRADE, 0, (31,)))
    write(t, "h2-preface", http_input(REQ_H2, 0, (4,)))
    write(t, "pass", http_input(REQ_UIDH, 0x10, (8, 8)))
    write(t, "pass-midstream-v6", http_input(REQ_MIDSTREAM, 0x10 | 0x04 | 0x01, (2,)))
    write(t, "out-of-order-resend", http_input(REQ_PIPELINE, 0, (10, 3), more=0x10 | 0x20))
    write(t, "out-of-order-body", http_input(REQ_PIPELINE, 0x40, (60, 5, 20), more=0x10))
    write(t, "late-resend-midstream", http_input(REQ_MIDSTREAM, 0x04 | 0x40, (4,), more=0x20))


# ---------------------------------------------------------------- dns

def dns_corpus():
    t = "dns"
    ecs = EDNS0TLV(optcode=8, optdata=b"\x00\x01\x18\x00\x64\x40\x00")
    mac = EDNS0TLV(optcode=65001, optdata=b"\x02\x00\x00\x00\x00\x01")
    cookie = EDNS0TLV(optcode=10, optdata=b"\x01\x02\x03\x04\x05\x06\x07\x08")
    odd = EDNS0TLV(optcode=8, optdata=b"\x00\x01\x11\x00\x64\x40\x00")  # odd length: the rest moves by an odd count

    def q(opts, **kw):
        return bytes(DNS(id=0x1234, rd=1, qd=DNSQR(qname="example.com"), ar=DNSRROPT(rclass=1232, rdata=opts), **kw))

    write(t, "ecs", b"\x00" + q([ecs]))
    write(t, "ecs-mac-cookie-v6", b"\x01" + q([cookie, ecs, mac]))
    write(t, "ecs-odd-extra-trailer", bytes([0x10 | 0x20]) + q([ecs, EDNS0TLV(optcode=3, optdata=b"x"), odd]))
    write(t, "pass", b"\x02" + q([ecs, mac]))
    write(t, "nochecksum-options-vlan", bytes([0x08 | 0x80 | 0x04]) + q([mac, ecs]))
    write(t, "v6-hbh-collector", bytes([0x01 | 0x80 | 0x40]) + q([ecs]))
    write(t, "no-opt", b"\x00" + bytes(DNS(id=1, rd=1, qd=DNSQR(qname="www.example.com"))))
    write(t, "response", b"\x00" + bytes(DNS(id=1, qr=1, qd=DNSQR(qname="example.com"),
                                              ar=DNSRROPT(rclass=512, rdata=[ecs]))))
    # Compression pointer in the OPT owner (not the root: malformed) and in an additional record before it.
    base = bytearray(q([ecs]))
    write(t, "opt-owner-pointer", b"\x00" + bytes(base[:29]) + b"\xc0\x0c" + bytes(base[30:]))
    two = bytes(DNS(id=2, rd=1, qd=DNSQR(qname="example.com"),
                    ar=DNSRROPT(rclass=1232, rdata=[ecs]) / DNSRROPT(rclass=1232, rdata=[mac])))
    write(t, "two-opt", b"\x00" + two)
    write(t, "short", b"\x00\x12\x34\x01")


# ---------------------------------------------------------------- policy and consent

POLICY_SMALL = """version: 1
purposes:
  advertising: {description: Ads chosen for you., benefit: Fewer irrelevant ads., data: [device identifier], retention: 90 days}
  analytics: {description: Counting visits., benefit: Better sites., data: [device identifier], retention: 13 months}
identifiers:
  http_headers: [{header: X-UIDH, name: UIDH}, {header: X-MSISDN, name: MSISDN}]
  dns_options: [{code: 8, name: ECS}, {code: 65001, name: MAC}]
collectors:
  - {name: adnet, purpose: advertising, description: Ad network, match: {prefixes: [203.0.113.0/25, "2001:db8:ad::/48"]}}
  - {name: metrics, purpose: analytics, description: Metrics, match: {hosts: ["*.metrics.example"], ports: [80, "8000-8099"]}}
exemptions:
  - {name: billing, reason: Billing and fraud prevention., match: {prefixes: [203.0.113.200/29]}}
subscribers: {prefixes: [100.64.0.0/10, "2001:db8:1000::/36"], ipv6_key_length: 56}
http: {ports: [80, 8080]}
dns: {ports: [53, "5353-5354"]}
enforcement: {staleness_limit: 500ms, strip_filler: "-"}
tagging: {passed: af11, stripped: 12, exempt: ef}
"""

POLICY_ANCHORS = """version: 1
purposes:
  ads: &p {description: Ads., benefit: Cheaper plan., data: [id], retention: 1 day}
  more: *p
identifiers: {http_headers: [{header: X-Acr, name: ACR}], dns_options: []}
collectors: []
subscribers: {prefixes: ["0.0.0.0/0", "::/0"], ipv6_key_length: 128}
"""

POLICY_ERRORS = """version: 1
purposes: {Bad Name: {description: x}}
identifiers: {http_headers: [{header: "Content-Length", name: CL}], dns_options: [{code: 0, name: zero}]}
collectors: [{name: c, purpose: nope, match: {prefixes: [10.0.0.0/33], ports: ["90-80"]}}]
subscribers: {prefixes: [100.64.0.0/10], ipv6_key_length: 0}
unknown: 1
"""

CONSENT_OK = """subscribers:
  - id: sub-1001
    addresses: [100.64.0.10, "2001:db8:1000:1::/64"]
    consents: [advertising, analytics]
  - id: sub-1004
    addresses: ["2001:db8:1000:3::42"]
    consents: [analytics, analytics]
  - id: sub-1005
    addresses: [100.64.0.12/32]
    consents: []
"""

CONSENT_ERRORS = """subscribers:
  - id: sub-1001
    addresses: [100.64.0.10, 198.51.100.1, "2001:db8:1000:100::/56"]
    consents: [advertsing]
  - id: sub-1001
    addresses: [100.64.0.10, 2001:db8:1000:5::1, 2001:db8:1000:5::2]
    consent: []
  - {id: "bad id", addresses: [], consents: [analytics]}
"""

CONSENT_OK_NDJSON = """{"id": "sub-1001", "addresses": ["100.64.0.10", "2001:db8:1000:1::/64"], "consents": ["advertising", "analytics"]}
{"id": "sub-1004", "addresses": ["2001:db8:1000:3::42"], "consents": ["analytics", "analytics"]}

{"id":"sub-1005","addresses":["100.64.0.12/32"],"consents":[]}\r
"""

CONSENT_ERRORS_NDJSON = """{"id": "sub-1001", "addresses": ["100.64.0.10", "198.51.100.1", "2001:db8:1000:100::/56"], "consents": ["advertsing"]}
{"id": "sub-1001", "addresses": ["100.64.0.10", "2001:db8:1000:5::1", "2001:db8:1000:5::2"], "consent": []}
{"id": "bad id", "addresses": [], "consents": ["analytics"]}
{"id": "a", "id": "b", "addresses": ["100.64.0.11"], "consents": []}
["a", ["100.64.0.11"], []]
{"id": "c", "addresses": ["100.64.0.11"], "consents": []
"""


def policy_corpus():
    for name, path in (("example", "config/policy.example.yaml"), ("consentd", "tests/consentd/policy.yaml")):
        with open(os.path.join(ROOT, path), "rb") as f:
            write("policy", name + ".yaml", f.read())
    write("policy", "small.yaml", POLICY_SMALL)
    write("policy", "anchors.yaml", POLICY_ANCHORS)
    write("policy", "errors.yaml", POLICY_ERRORS)
    write("policy", "two-documents.yaml", POLICY_ANCHORS + "---\n" + POLICY_ANCHORS)
    write("consent", "ok.yaml", CONSENT_OK)
    write("consent", "errors.yaml", CONSENT_ERRORS)
    write("consent", "empty.yaml", "subscribers: []\n")
    write("consent", "ok.ndjson", CONSENT_OK_NDJSON)
    write("consent", "errors.ndjson", CONSENT_ERRORS_NDJSON)
    with open(os.path.join(ROOT, "config/consent.example.yaml"), "rb") as f:
        write("consent", "example.yaml", f.read())


# ---------------------------------------------------------------- control frames

def frame(ftype, payload):
    return b"OG\x01" + bytes([ftype]) + struct.pack(">I", len(payload)) + payload


def s8(b):
    return bytes([len(b)]) + b


def v4(addr, mask):
    return b"\x04" + bytes(int(x) for x in addr.split(".")) + struct.pack(">I", mask)


V6_KEY = b"\x06" + bytes.fromhex("20010db8100000010000000000000000")


def frame_corpus():
    t = "frame"
    policy = POLICY_SMALL.encode()
    hello = frame(0x01, s8(b"edge-1") + struct.pack(">Q", 41) + s8(b"stream-7"))
    ack = frame(0x02, struct.pack(">Q", 42))
    stats = frame(0x03, struct.pack(">I", 3)
                  + b"\x01" + s8(b"packets") + struct.pack(">Q", 100) + s8(b"") + s8(b"")
                  + b"\x01" + s8(b"stripped") + struct.pack(">Q", 7) + s8(b"collector") + s8(b"adnet")
                  + b"\x02" + s8(b"table_entries") + struct.pack(">Q", 5) + s8(b"") + s8(b""))
    welcome = frame(0x10, struct.pack(">QIB", 42, 1000, 1))
    begin = frame(0x11, struct.pack(">QII", 42, 2, 1) + s8(b"stream-7") + s8(b"v1") + struct.pack(">H", 11)
                  + b"policy.yaml" + struct.pack(">I", len(policy)) + policy)
    chunk = frame(0x12, struct.pack(">I", 3) + v4("100.64.0.10", 3) + v4("100.64.0.11", 2) + V6_KEY + struct.pack(">I", 1))
    end = frame(0x13, struct.pack(">QI", 42, 3))
    delta = frame(0x14, struct.pack(">QBI", 43, 1, 2) + b"\x01" + v4("100.64.0.12", 1) + b"\x02" + V6_KEY)
    delta_part = frame(0x14, struct.pack(">QBI", 44, 0, 1) + b"\x02" + b"\x04" + bytes([100, 64, 0, 10]))
    update = frame(0x15, struct.pack(">Q", 44) + s8(b"stream-7") + s8(b"v1") + struct.pack(">H", 0)
                   + struct.pack(">I", len(policy)) + policy)
    heartbeat = frame(0x16, struct.pack(">QQ", 44, 1700000000000))
    goodbye = frame(0x20, struct.pack(">H", 4) + struct.pack(">H", 8) + b"replaced")
    disclosure = frame(0x04, struct.pack(">QQQQQI", 0x0123456789ABCDEF, 1, 1700000000000, 1700000060000, 2, 2)
                       + b"\x04" + bytes([100, 64, 0, 10]) + s8(b"example-adnet") + s8(b"X-UIDH")
                       + struct.pack(">QQ", 3, 0)
                       + V6_KEY[:17] + s8(b"(none)") + s8(b"EDNS client subnet") + struct.pack(">QQ", 0, 7))
    disclosure_empty = frame(0x04, struct.pack(">QQQQQI", 7, 2, 1700000060000, 1700000120000, 5, 0))
    disclosure_ack = frame(0x17, struct.pack(">QQ", 0x0123456789ABCDEF, 1))
    resume_token = frame(0x1B, struct.pack(">Q", 43) + s8(b"r1:0123456789abcdef:0123456789abcdef0123456789abcdef"))
    for name, data in (("hello", hello), ("ack", ack), ("stats", stats), ("welcome", welcome),
                       ("snapshot-begin", begin), ("snapshot-chunk", chunk), ("snapshot-end", end),
                       ("delta", delta), ("delta-part", delta_part), ("policy", update),
                       ("heartbeat", heartbeat), ("goodbye", goodbye), ("disclosure", disclosure),
                       ("disclosure-overflow-only", disclosure_empty), ("disclosure-ack", disclosure_ack),
                       ("resume-token", resume_token)):
        write(t, name, data)
    write(t, "to-server-stream", hello + ack + stats + disclosure + goodbye)
    write(t, "to-client-stream",
          welcome + begin + chunk + end + delta + resume_token + delta_part + heartbeat + disclosure_ack)
    write(t, "truncated", begin[:40])


# ---------------------------------------------------------------- api

def api_corpus():
    t = "api"
    bodies = [
        (0, "grant", '{"source": "portal", "notice_version": "2024-05"}'),
        (0, "grant-empty", ""),
        (1, "revoke", '{"source": "call-centre"}'),
        (1, "revoke-duplicate-key", '{"source": "a", "source": "b"}'),
        (2, "bind", '{"subscriber": "sub-1001", "source": "radius"}'),
        (2, "bind-unicode", '{"subscriber": "sub\\u00e9", "extra": [1, 2.5e3, null, true, {"a": {}}]}'),
        (3, "unbind", "{}"),
        (3, "unbind-nested", '[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]'),
        (4, "ndjson", '{"subscriber": "sub-1", "addresses": ["100.64.0.1", "2001:db8:1000:1::/64"], '
                      '"consents": ["advertising"], "notice_version": "2024-05", "source": "crm"}\n\n'
                      '{"subscriber": "sub-2", "addresses": ["100.64.0.2", "2001:db8:1000:2::9"]}\r\n'),
        (4, "ndjson-errors", '{"subscriber": "sub-1", "consents": ["advertising"]}\n'
                             '{"subscriber": "sub-2", "addresses": ["100.64.0.1", "100.64.0.1"]}\nnot json\n'),
        (5, "csv", 'subscriber,addresses,consents,notice_version,source\r\n'
                   'sub-1,100.64.0.1 2001:db8:1000:1::/64,advertising analytics,2024-05,"crm, ""migration"""\r\n'
                   'sub-2,100.64.0.2,,,\n'),
        (5, "csv-columns", 'consents,subscriber,notice_version\nadvertising,sub-3,v1\n"unterminated,sub-4,v1\n'),
        (6, "route-consent", "\x01/v1/subscribers/sub%2D1/consents/advertising?wait=enforced&timeout=2s"),
        (6, "route-binding", "\x01/v1/bindings/2001:db8:1000:1::%2F64"),
        (6, "route-binding-two-segments", "\x02/v1/bindings/100.64.0.1/32?wait=enforced"),
        (6, "route-get", "\x00/v1/subscribers/sub-1?history=5"),
        (6, "route-import", "\x03/v1/import?format=csv"),
        (7, "address-v4", "100.64.0.1"),
        (7, "address-v6-prefix", "2001:db8:1000:1::/64"),
        (7, "address-v6-bare", "2001:db8:1000:1::42"),
        (7, "address-bad", "100.64.0.1/24"),
    ]
    for mode, name, text in bodies:
        write(t, name, bytes([mode]) + text.encode())


def radius_corpus():
    """Accounting-Requests (tests/fuzz/fuzz_radius.cpp): one datagram each."""
    import hashlib
    import hmac
    secret = b"fuzz-secret-0123456789"

    def attr(t, v):
        return bytes([t, len(v) + 2]) + v

    def request(attrs, ident=1, ma=False):
        if ma:
            attrs += attr(80, bytes(16))
        head = bytes([4, ident]) + struct.pack("!H", 20 + len(attrs))
        if ma:
            attrs = attrs[:-16] + hmac.new(secret, head + bytes(16) + attrs, hashlib.md5).digest()
        return head + hashlib.md5(head + bytes(16) + attrs + secret).digest() + attrs

    start = (attr(40, struct.pack("!I", 1)) + attr(1, b"cust-1@isp.example") + attr(44, b"s-1") +
             attr(8, bytes([100, 64, 1, 1])) + attr(32, b"nas-1"))
    write("radius", "start-ipv4", request(start))
    write("radius", "start-message-authenticator", request(start, ident=2, ma=True))
    write("radius", "interim-ipv6", request(
        attr(40, struct.pack("!I", 3)) + attr(1, b"cust-6") + attr(44, b"s-6") +
        attr(97, bytes([0, 64]) + bytes.fromhex("20010db810000006")) +
        attr(123, bytes([0, 56]) + bytes.fromhex("20010db8100006")) +
        attr(168, bytes.fromhex("20010db8100000070000000000000001"))))
    write("radius", "stop-vendor", request(
        attr(40, struct.pack("!I", 2)) + attr(44, b"s-1") + attr(4, bytes([203, 0, 113, 10])) +
        attr(26, struct.pack("!I", 3561) + attr(1, b"line-7"))))
    write("radius", "accounting-on", request(attr(40, struct.pack("!I", 7)) + attr(32, b"nas-1")))
    write("radius", "padded", request(start) + bytes(8))


def main():
    packet_corpus()
    encapsulated_corpus()
    http_corpus()
    dns_corpus()
    policy_corpus()
    frame_corpus()
    api_corpus()
    radius_corpus()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(os.path.join(HERE, "corpus")) for f in fs)
    print(f"corpus: {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
