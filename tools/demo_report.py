#!/usr/bin/env python3
"""What optgate did to each subscriber's identifiers, per collector.

Reads the capture that went in and the frames that came out, and for every
identifier a subscriber sent towards a collector (an HTTP header line or an
EDNS0 option named in the policy) says whether it arrived intact (passed) or
not (stripped: the header's value overwritten with the filler, or the EDNS0
option made Padding). Independent of optgate's own counters: it reads packets.

usage: demo_report.py POLICY.yaml BINDINGS IN.pcap OUT.pcap
BINDINGS: ADDRESS_OR_PREFIX=SUBSCRIBER,... (the bindings made in consentd)
"""
import collections
import ipaddress
import sys

import yaml
from scapy.all import DNS, IP, TCP, UDP, IPv6, Raw, rdpcap


def load_policy(path):
    with open(path) as f:
        p = yaml.safe_load(f)
    headers = {h["header"].lower(): h["header"] for h in p["identifiers"].get("http_headers", [])}
    options = {o["code"]: o.get("name", str(o["code"])) for o in p["identifiers"].get("dns_options", [])}
    places = []
    for kind in ("collectors", "exemptions"):
        for c in p.get(kind, []) or []:
            name = c["name"] + (" (exemption)" if kind == "exemptions" else "")
            for prefix in (c.get("match", {}) or {}).get("prefixes", []) or []:
                places.append((ipaddress.ip_network(prefix), name))
    places.sort(key=lambda x: -x[0].prefixlen)
    return headers, options, places


def where(places, addr):
    a = ipaddress.ip_address(addr)
    for net, name in places:
        if a.version == net.version and a in net:
            return name
    return None


def identifiers(pkt, headers, options):
    """[(identifier name, value bytes)] the frame carries."""
    found = []
    if pkt.haslayer(TCP) and pkt.haslayer(Raw):
        for line in bytes(pkt[Raw].load).split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep and name.strip().lower().decode(errors="replace") in headers:
                found.append((headers[name.strip().lower().decode()], value.strip()))
    if pkt.haslayer(UDP) and pkt[UDP].dport == 53:
        for code, value in edns0_options(bytes(pkt[UDP].payload)):
            if code in options:
                found.append((options[code], value))
    return found


def skip_name(msg, off):
    while off < len(msg):
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n
    raise ValueError("name runs past the message")


def edns0_options(msg):
    """[(code, bytes)] of the OPT record of a DNS message (by hand: scapy
    2.5 folds every option after an ECS option into the ECS one)."""
    try:
        qd, an, ns, ar = (int.from_bytes(msg[i:i + 2], "big") for i in (4, 6, 8, 10))
        off = 12
        for _ in range(qd):
            off = skip_name(msg, off) + 4
        out = []
        for i in range(an + ns + ar):
            off = skip_name(msg, off)
            rtype = int.from_bytes(msg[off:off + 2], "big")
            rdlen = int.from_bytes(msg[off + 8:off + 10], "big")
            rdata = msg[off + 10:off + 10 + rdlen]
            off += 10 + rdlen
            if rtype == 41 and i >= an + ns:
                pos = 0
                while pos + 4 <= len(rdata):
                    code = int.from_bytes(rdata[pos:pos + 2], "big")
                    length = int.from_bytes(rdata[pos + 2:pos + 4], "big")
                    out.append((code, rdata[pos + 4:pos + 4 + length]))
                    pos += 4 + length
        return out
    except (ValueError, IndexError):
        return []


def key(pkt):
    ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
    extra = (pkt[TCP].seq,) if pkt.haslayer(TCP) else ((pkt[DNS].id,) if pkt.haslayer(DNS) else ())
    return (ip.src, ip.dst, l4.sport if l4 else 0, l4.dport if l4 else 0) + extra


def main():
    policy, bindings, inp, outp = sys.argv[1:5]
    headers, options, places = load_policy(policy)
    subs = []
    for item in bindings.split(","):
        addr, _, sub = item.partition("=")
        subs.append((ipaddress.ip_network(addr, strict=False), sub))
    out = collections.defaultdict(list)
    for pkt in rdpcap(outp):
        if pkt.haslayer(IP) or pkt.haslayer(IPv6):
            out[key(pkt)].append(pkt)
    table = collections.Counter()
    for pkt in rdpcap(inp):
        ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
        if ip is None:
            continue
        # Frames with the same key (a bare ACK and the data after it) leave
        # in the order they came: pair them first in, first out.
        forwarded = out.get(key(pkt), [])
        twin = forwarded.pop(0) if forwarded else None
        found = identifiers(pkt, headers, options)
        if not found:
            continue
        a = ipaddress.ip_address(ip.src)
        sub = next((s for net, s in subs if a.version == net.version and a in net), None)
        if sub is None:
            sub = f"{ip.src} (unbound)"
        dest = where(places, ip.dst) or "(not a collector)"
        after = identifiers(twin, headers, options) if twin is not None else []
        for name, value in found:
            verdict = "passed" if (name, value) in after else "stripped"
            table[(sub, dest, name, verdict)] += 1
    rows = collections.defaultdict(lambda: [0, 0])
    for (sub, dest, name, verdict), n in table.items():
        rows[(sub, dest, name)][0 if verdict == "passed" else 1] += n
    width = max([len(s) for s, _, _ in rows] + [10])
    print(f"  {'subscriber':<{width}}  {'collector':<28} {'identifier':<34} passed  stripped")
    for (sub, dest, name), (p, s) in sorted(rows.items()):
        print(f"  {sub:<{width}}  {dest:<28} {name:<34} {p:>6}  {s:>8}")


if __name__ == "__main__":
    main()
