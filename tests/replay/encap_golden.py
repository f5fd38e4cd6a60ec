#!/usr/bin/python3
"""Golden replays of encapsulated traffic (docs/pipeline.md#encapsulations).

    encap_golden.py OPTGATE_REPLAY SOURCE_ROOT

Every frame is built with scapy, an implementation independent of optgate and
of the test packet builder: PPPoE (plain and under QinQ), MPLS (one and three
labels), GRE (key; checksum + sequence + Ethernet bridging), L2TPv2 (length,
compressed PPP), VXLAN, Geneve (with an option), GTP-U (plain; sequence
number), each over outer IPv4 and IPv6, each carrying inner IPv4 and IPv6
HTTP and DNS flows with strip and pass verdicts (config/policy.example.yaml,
config/consent.example.yaml). optgate-replay runs them with every
encapsulation enabled; each output frame must equal, byte for byte, the frame
scapy builds around the expected inner packet (identifier value overwritten
or EDNS0 option made Padding of the same length), so every inner and outer
length and checksum is scapy's. Then the same capture with `encapsulations: []` must come out
unchanged, each frame counted under encapsulated_not_inspected_<kind>.
Exits 1 with one line per disagreement.
"""
import json
import logging
import os
import subprocess
import sys
import tempfile

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.all import (  # noqa: E402
    DNS, DNSQR, DNSRROPT, EDNS0TLV, GRE, HDLC, IP, PPP, TCP, UDP, Dot1AD, Dot1Q, Ether, IPv6, PPPoE, raw,
    rdpcap, wrpcap,
)
from scapy.contrib.geneve import GENEVE  # noqa: E402
from scapy.contrib.gtp import GTP_U_Header  # noqa: E402
from scapy.contrib.mpls import MPLS  # noqa: E402
from scapy.layers.l2tp import L2TP  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

OUTER_MAC = dict(src="02:00:00:00:0b:01", dst="02:00:00:00:0b:02")
INNER_MAC = dict(src="02:00:00:00:0c:01", dst="02:00:00:00:0c:02")
ALL = ["pppoe", "mpls", "gre", "l2tp", "vxlan", "geneve", "gtpu"]


def outer_ip(v6):
    if v6:
        return IPv6(src="2001:db8:ad:ff::1", dst="2001:db8:ad:ff::2")
    return IP(src="198.18.5.1", dst="198.18.5.2")


def ppp_proto(inner):
    return 0x0057 if isinstance(inner, IPv6) else 0x0021


# (name, kind, wrap(inner IP packet, outer_v6) -> frame). PPPoE and MPLS have
# no outer IP: `outer_v6` picks a variant instead.
WRAPPERS = [
    ("pppoe", "pppoe", lambda i, v6: (
        Ether(**OUTER_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20) if v6 else Ether(**OUTER_MAC))
        / PPPoE(sessionid=0x2a) / PPP(proto=ppp_proto(i)) / i),
    ("mpls", "mpls", lambda i, v6: (
        Ether(**OUTER_MAC) / MPLS(label=16, s=0, ttl=64) / MPLS(label=17, s=0, ttl=64) / MPLS(label=18, s=1, ttl=64)
        if v6 else Ether(**OUTER_MAC) / MPLS(label=100, s=1, ttl=64)) / i),
    ("gre key", "gre", lambda i, v6: Ether(**OUTER_MAC) / outer_ip(v6) / GRE(key_present=1, key=7) / i),
    ("gre checksum seq teb", "gre", lambda i, v6: Ether(**OUTER_MAC) / outer_ip(v6)
        / GRE(chksum_present=1, seqnum_present=1, seqence_number=5, proto=0x6558) / Ether(**INNER_MAC) / i),
    ("l2tp", "l2tp", lambda i, v6: Ether(**OUTER_MAC) / outer_ip(v6) / UDP(sport=1701, dport=1701)
        / L2TP(hdr="length", tunnel_id=3, session_id=4) / HDLC() / PPP() / i),
    ("vxlan", "vxlan", lambda i, v6: Ether(**OUTER_MAC) / outer_ip(v6) / UDP(sport=49152, dport=4789)
        / VXLAN(flags=0x08, NextProtocol=0, vni=42) / Ether(**INNER_MAC) / i),
    ("geneve option", "geneve", lambda i, v6: Ether(**OUTER_MAC) / outer_ip(v6) / UDP(sport=49153, dport=6081)
        / GENEVE(vni=5, proto=0x6558, optionlen=2, options=bytes([1, 2, 3, 1, 9, 9, 9, 9]))
        / Ether(**INNER_MAC) / i),
    ("gtpu", "gtpu", lambda i, v6: Ether(**OUTER_MAC) / outer_ip(v6) / UDP(sport=2152, dport=2152)
        / GTP_U_Header(teid=0x1234, gtp_type=255) / i),
    ("gtpu seq", "gtpu", lambda i, v6: Ether(**OUTER_MAC) / outer_ip(v6) / UDP(sport=40000, dport=2152)
        / GTP_U_Header(teid=0x1235, gtp_type=255, S=1, seq=77) / i),
]

HTTP_REQUEST = "GET /ad HTTP/1.1\r\nHost: a.example\r\nX-UIDH: 0123456789abcdef\r\nAccept: */*\r\n\r\n"
ECS = bytes([0, 1, 24, 0, 100, 64, 0])  # family 1, source /24, scope 0, 100.64.0
COOKIE = bytes(range(1, 9))


def dns_message(options):
    opt = DNSRROPT(rclass=1232, rdata=[EDNS0TLV(optcode=c, optdata=d) for c, d in options])
    return raw(DNS(id=0x5151, rd=1, qd=DNSQR(qname="www.example.org"), ar=opt))


def ip(src, dst):
    return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)


# (what, source, destination, protocol, strip). Verdicts by the example files:
# sub-1001 (100.64.0.10, 2001:db8:1000:1::/64) consented to advertising,
# sub-1005 (100.64.0.12) and sub-1004 (2001:db8:1000:3::/64) did not;
# 203.0.113.0/25, 2001:db8:ad::/48 and 198.18.0.53:53 are advertising collectors.
FLOWS = [
    ("http strip v4", "100.64.0.12", "203.0.113.10", "http", True),
    ("http pass v4", "100.64.0.10", "203.0.113.10", "http", False),
    ("http strip v6", "2001:db8:1000:3::42", "2001:db8:ad::80", "http", True),
    ("http pass v6", "2001:db8:1000:1::5", "2001:db8:ad::80", "http", False),
    ("dns strip v4", "100.64.0.12", "198.18.0.53", "dns", True),
    ("dns pass v4", "100.64.0.10", "198.18.0.53", "dns", False),
    ("dns strip v6", "2001:db8:1000:3::42", "2001:db8:ad::53", "dns", True),
    ("dns pass v6", "2001:db8:1000:1::5", "2001:db8:ad::53", "dns", False),
]


def cases():
    """(label, kind, input frame bytes, expected output bytes) in capture order."""
    out = []
    sport = 20000
    for wname, kind, wrap in WRAPPERS:
        for outer_v6 in (False, True):
            for what, src, dst, proto, strip in FLOWS:
                sport += 1
                label = "%s / outer %s / %s" % (wname, "v6" if outer_v6 else "v4", what)
                if proto == "http":
                    syn = ip(src, dst) / TCP(sport=sport, dport=80, flags="S", seq=999)
                    out.append((label + " (SYN)", kind, raw(wrap(syn, outer_v6)), raw(wrap(syn, outer_v6))))
                    seg = ip(src, dst) / TCP(sport=sport, dport=80, flags="PA", seq=1000, ack=1)
                    sent = seg / HTTP_REQUEST
                    scrubbed = HTTP_REQUEST.replace("0123456789abcdef", "x" * 16)
                    want = seg / (scrubbed if strip else HTTP_REQUEST)
                else:
                    udp = ip(src, dst) / UDP(sport=sport, dport=53)
                    sent = udp / dns_message([(8, ECS), (10, COOKIE)])
                    # On strip the ECS option becomes Padding (12) of its length, zeroed.
                    want = udp / dns_message([(12, bytes(len(ECS))) if strip else (8, ECS), (10, COOKIE)])
                out.append((label, kind, raw(wrap(sent, outer_v6)), raw(wrap(want, outer_v6))))
    return out


def replay(optgate_replay, policy, consent, frames, tmp, tag):
    pkts = []
    for n, f in enumerate(frames):
        p = Ether(f)
        p.time = 1_700_000_000 + n / 1000
        pkts.append(p)
    src = os.path.join(tmp, tag + "-in.pcap")
    dst = os.path.join(tmp, tag + "-out.pcap")
    report = os.path.join(tmp, tag + "-report.json")
    wrpcap(src, pkts)
    run = subprocess.run([optgate_replay, "--policy", policy, "--consent", consent, "--report", report, "--quiet",
                          src, dst], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit("optgate-replay failed (%d): %s%s" % (run.returncode, run.stdout, run.stderr))
    with open(report) as f:
        counters = json.load(f)["counters"]
    return [raw(p) for p in rdpcap(dst)], counters


def diff(a, b):
    if len(a) != len(b):
        return "length %d, scapy's %d" % (len(a), len(b))
    offs = [i for i in range(len(a)) if a[i] != b[i]]
    return "bytes differ at offsets %s (optgate %s, scapy %s)" % (
        offs[:8], a[offs[0]:offs[0] + 4].hex(), b[offs[0]:offs[0] + 4].hex())


def main():
    optgate_replay, root = sys.argv[1], sys.argv[2]
    with open(os.path.join(root, "config/policy.example.yaml")) as f:
        example = f.read()
    consent = os.path.join(root, "config/consent.example.yaml")
    all_cases = cases()
    frames = [c[2] for c in all_cases]
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        on = os.path.join(tmp, "on.yaml")
        with open(on, "w") as f:
            f.write(example + "\nencapsulations: [%s]\n" % ", ".join(ALL))
        off = os.path.join(tmp, "off.yaml")
        with open(off, "w") as f:
            f.write(example + "\nencapsulations: []\n")

        out, counters = replay(optgate_replay, on, consent, frames, tmp, "on")
        if len(out) != len(frames):
            problems.append("enabled: %d frames out of %d" % (len(out), len(frames)))
        changed = 0
        for (label, _, sent, want), got in zip(all_cases, out):
            changed += sent != want
            if got != want:
                problems.append("enabled: %s: %s" % (label, diff(got, want)))
        expect = {"encapsulated_inspected": len(frames), "rewritten": changed, "dropped": 0}
        expect.update({"encapsulated_not_inspected_" + k: 0 for k in ALL})
        for name, value in expect.items():
            if counters.get(name) != value:
                problems.append("enabled: counter %s = %s, expected %d" % (name, counters.get(name), value))
        # Half of the request frames strip (4 of 8 flows per wrapper and outer family).
        if changed != len(WRAPPERS) * 2 * 4:
            problems.append("enabled: %d frames rewritten, expected %d" % (changed, len(WRAPPERS) * 2 * 4))

        out, counters = replay(optgate_replay, off, consent, frames, tmp, "off")
        for (label, _, sent, _), got in zip(all_cases, out):
            if got != sent:
                problems.append("disabled: %s: changed: %s" % (label, diff(got, sent)))
        for kind in ALL:
            n = sum(1 for c in all_cases if c[1] == kind)
            if counters.get("encapsulated_not_inspected_" + kind) != n:
                problems.append("disabled: counter encapsulated_not_inspected_%s = %s, expected %d" % (
                    kind, counters.get("encapsulated_not_inspected_" + kind), n))
        if counters.get("encapsulated_inspected") != 0 or counters.get("rewritten") != 0:
            problems.append("disabled: something was inspected or rewritten: %s" % {
                k: counters.get(k) for k in ("encapsulated_inspected", "rewritten")})

    for p in problems:
        print(p)
    print("%d frames, %d problems" % (len(frames), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
