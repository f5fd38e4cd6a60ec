#!/usr/bin/python3
"""Cross-check the test packet builder against scapy.

    scapy_check.py SCAPY_SAMPLE          # run the generator into a temp dir, check
    scapy_check.py --pcap F --jsonl F    # check files written earlier

scapy-sample writes builder packets and, per packet, what the test meant
them to be. For every packet scapy must agree:
  * lengths and checksums: delete every length/checksum field (IPv4 ihl, len,
    chksum; IPv6 plen and extension header len; UDP len, chksum; TCP dataofs,
    chksum), let scapy rebuild, and the bytes must equal the builder's
    (except the L4 checksum of packets built with corrupt_l4_checksum(),
    which must then differ);
  * layers: MACs, VLAN tags (TPID, VID, PCP) in order, addresses, IPv6
    extension header chain, ports, TCP seq/flags, payload length;
  * DNS: id, qname, qtype, RD, ARCOUNT, the OPT record (UDP size, DO) and
    its options, EDNS Client Subnet decoded by scapy's EDNS0ClientSubnet;
  * fragments: offsets and flags; scapy's own defragment()/defragment6()
    must rebuild the original datagram;
  * pcap timestamps: 1 ms apart from 1700000000 s.
A built-in negative control damages a few packets and requires the checks to
fail, so a blind checker cannot pass. Exits 1 with one line per disagreement.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

from scapy.all import (  # noqa: E402
    DNS, DNSRROPT, EDNS0ClientSubnet, EDNS0TLV, Dot1Q, Ether, IP, IPv6, IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrSegmentRouting,
    NoPayload, Padding, Raw, TCP, UDP, defragment, defragment6, raw, rdpcap,
)

EXT_TYPES = [
    (IPv6ExtHdrHopByHop, 0),
    (IPv6ExtHdrSegmentRouting, 43),
    (IPv6ExtHdrRouting, 43),
    (IPv6ExtHdrDestOpt, 60),
    (IPv6ExtHdrFragment, 44),
]
BASE_TS_US = 1_700_000_000_000_000


def ext_type(layer):
    for cls, nh in EXT_TYPES:
        if isinstance(layer, cls):
            return nh
    return None


def is_fragment(pkt):
    if IP in pkt and (pkt[IP].flags.MF or pkt[IP].frag):
        return True
    return IPv6ExtHdrFragment in pkt and (pkt[IPv6ExtHdrFragment].m or pkt[IPv6ExtHdrFragment].offset)


def padding_len(pkt):
    return len(pkt[Padding].load) if Padding in pkt else 0


def l4_checksum_offset(pkt):
    """Frame offset of the TCP/UDP checksum field."""
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    return len(raw(pkt)) - len(raw(l4)) + (16 if isinstance(l4, TCP) else 6)


def rebuilt_by_scapy(pkt, keep_udp_checksum=False):
    """The frame with every length and checksum recomputed by scapy."""
    q = pkt.copy()
    if is_fragment(q):
        # The upper layer of a fragment is opaque data: keep its bytes as they are.
        holder = q[IPv6ExtHdrFragment] if IPv6ExtHdrFragment in q else q[IP]
        data = raw(holder.payload)
        holder.remove_payload()
        holder.add_payload(Raw(load=data))
    layer = q
    while not isinstance(layer, NoPayload):
        if isinstance(layer, IP):
            del layer.ihl, layer.len, layer.chksum
        elif isinstance(layer, IPv6):
            del layer.plen
        elif isinstance(layer, (IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting,
                                IPv6ExtHdrSegmentRouting)):
            del layer.len
        elif isinstance(layer, UDP):
            del layer.len
            if not keep_udp_checksum:
                del layer.chksum
        elif isinstance(layer, TCP):
            del layer.dataofs, layer.chksum
        layer = layer.payload
    return raw(q)


def opt_options(opt):
    """The OPT record's options. scapy 2.5's EDNS0ClientSubnet keeps the
    options after it as its Raw payload; dissect those again."""
    out = []
    for option in opt.rdata:
        while True:
            rest = option.payload
            out.append(option)
            if isinstance(rest, NoPayload) or not raw(rest):
                break
            option = EDNS0TLV(raw(rest))
    return out


def diff_offsets(a, b):
    if len(a) != len(b):
        return "length %d vs scapy %d" % (len(a), len(b))
    offs = [i for i in range(len(a)) if a[i] != b[i]]
    return "bytes differ at offsets %s (builder %s, scapy %s)" % (
        offs[:8], a[offs[0]:offs[0] + 4].hex(), b[offs[0]:offs[0] + 4].hex())


class Checker:
    def __init__(self):
        self.failures = []

    def fail(self, name, msg):
        self.failures.append("%s: %s" % (name, msg))

    def expect_eq(self, name, what, got, want):
        if got != want:
            self.fail(name, "%s: scapy says %r, expected %r" % (what, got, want))

    def check_bytes(self, name, pkt, exp):
        orig = raw(pkt)
        keep_zero = exp.get("udp_chksum") == 0
        rebuilt = rebuilt_by_scapy(pkt, keep_udp_checksum=keep_zero)
        if exp.get("corrupt_l4"):
            off = l4_checksum_offset(pkt)
            if rebuilt[off:off + 2] == orig[off:off + 2]:
                self.fail(name, "corrupt_l4_checksum() left a checksum scapy accepts")
            rebuilt = rebuilt[:off] + orig[off:off + 2] + rebuilt[off + 2:]
        if rebuilt != orig:
            self.fail(name, "lengths/checksums disagree with scapy: " + diff_offsets(orig, rebuilt))

    def check_layers(self, name, pkt, exp):
        eth = pkt[Ether]
        self.expect_eq(name, "src mac", eth.src, exp.get("src_mac", "02:00:00:00:00:01"))
        self.expect_eq(name, "dst mac", eth.dst, exp.get("dst_mac", "02:00:00:00:00:02"))
        tags, tpid, layer = [], eth.type, eth.payload
        while isinstance(layer, Dot1Q):  # Dot1AD is a Dot1Q
            tags.append([tpid, layer.vlan, layer.prio])
            tpid, layer = layer.type, layer.payload
        self.expect_eq(name, "vlan tags [tpid, vid, pcp]", tags, exp.get("vlans", []))

        if exp["ip"] == 4:
            if IP not in pkt:
                return self.fail(name, "scapy finds no IPv4 layer")
            ip = pkt[IP]
            for key, field in (("src", "src"), ("dst", "dst"), ("ttl", "ttl"), ("ip_id", "id"), ("ihl", "ihl")):
                if key in exp:
                    self.expect_eq(name, "ip " + field, getattr(ip, field), exp[key])
            if "df" in exp:
                self.expect_eq(name, "ip DF", bool(ip.flags.DF), exp["df"])
        else:
            if IPv6 not in pkt:
                return self.fail(name, "scapy finds no IPv6 layer")
            ip = pkt[IPv6]
            for key, field in (("src", "src"), ("dst", "dst"), ("tc", "tc"), ("fl", "fl")):
                if key in exp:
                    self.expect_eq(name, "ipv6 " + field, getattr(ip, field), exp[key])
            chain, layer = [], ip.payload
            while ext_type(layer) is not None:
                chain.append(ext_type(layer))
                layer = layer.payload
            self.expect_eq(name, "ipv6 extension header chain", chain, exp.get("ext", []))

        if "fragment_of" in exp:
            if exp["ip"] == 4:
                self.expect_eq(name, "fragment offset (bytes)", ip.frag * 8, exp["frag_offset"])
                self.expect_eq(name, "MF", bool(ip.flags.MF), exp["mf"])
            else:
                fh = pkt[IPv6ExtHdrFragment]
                self.expect_eq(name, "fragment offset (bytes)", fh.offset * 8, exp["frag_offset"])
                self.expect_eq(name, "M", bool(fh.m), exp["mf"])
                self.expect_eq(name, "fragment id", fh.id, exp["frag_id"])
            return

        l4cls = {"udp": UDP, "tcp": TCP}.get(exp.get("l4"))
        if l4cls is None:
            return
        if l4cls not in pkt:
            return self.fail(name, "scapy finds no %s layer" % exp["l4"])
        l4 = pkt[l4cls]
        for key, field in (("sport", "sport"), ("dport", "dport"), ("seq", "seq"), ("tcp_dataofs", "dataofs"),
                           ("udp_chksum", "chksum")):
            if key in exp:
                self.expect_eq(name, "%s %s" % (exp["l4"], field), getattr(l4, field), exp[key])
        if "tcp_flags" in exp:
            self.expect_eq(name, "tcp flags", int(l4.flags), exp["tcp_flags"])
        if "payload_len" in exp:
            self.expect_eq(name, "l4 payload length", len(raw(l4.payload)) - padding_len(pkt), exp["payload_len"])
        if "trailer" in exp:
            self.expect_eq(name, "ethernet padding", padding_len(pkt), exp["trailer"])
        if "dns" in exp:
            self.check_dns(name, pkt, exp["dns"])

    def check_dns(self, name, pkt, exp):
        if DNS not in pkt:
            return self.fail(name, "scapy finds no DNS layer")
        dns = pkt[DNS]
        for key, field in (("id", "id"), ("qtype", "qtype"), ("rd", "rd"), ("arcount", "arcount")):
            if key in exp:
                got = getattr(dns.qd, field) if field == "qtype" else getattr(dns, field)
                self.expect_eq(name, "dns " + field, got, exp[key])
        self.expect_eq(name, "dns qname", dns.qd.qname, exp["qname"].encode())
        rrs, rr = [], dns.ar
        while rr is not None and not isinstance(rr, (NoPayload, Padding, Raw)):
            rrs.append(rr)
            rr = rr.payload
        if not rrs or not isinstance(rrs[0], DNSRROPT):
            return self.fail(name, "scapy finds no OPT record first in the additional section")
        opt, want = rrs[0], exp["opt"]
        self.expect_eq(name, "OPT owner", opt.rrname, b".")
        self.expect_eq(name, "OPT udp size", opt.rclass, want["udp_size"])
        if "do" in want:
            self.expect_eq(name, "OPT DO bit", bool(opt.z & 0x8000), want["do"])
        options = opt_options(opt)
        self.expect_eq(name, "OPT option count", len(options), len(want["options"]))
        for got, w in zip(options, want["options"]):
            self.expect_eq(name, "OPT option code", got.optcode, w["code"])
            if "family" in w:
                if not isinstance(got, EDNS0ClientSubnet):
                    self.fail(name, "scapy does not decode option 8 as EDNS0ClientSubnet")
                    continue
                self.expect_eq(name, "ECS family", got.family, w["family"])
                self.expect_eq(name, "ECS source prefix", got.source_plen, w["source"])
                self.expect_eq(name, "ECS scope prefix", got.scope_plen, w["scope"])
                self.expect_eq(name, "ECS address", got.address, w["address"])
                self.expect_eq(name, "ECS option length", got.optlen, 4 + (w["source"] + 7) // 8)
            else:
                self.expect_eq(name, "option %d data" % w["code"], got.optdata.hex(), w["data"])
        self.expect_eq(name, "RR types after OPT", [r.type for r in rrs[1:]], exp.get("extra_types", []))

    def check_packet(self, name, pkt, exp):
        self.check_bytes(name, pkt, exp)
        self.check_layers(name, pkt, exp)

    def check_reassembly(self, whole_name, whole, frags):
        if IP in whole:
            done = [p for p in defragment(frags) if IP in p and not is_fragment(p)]
            if len(done) != 1:
                return self.fail(whole_name, "scapy could not reassemble the IPv4 fragments")
            got, want = raw(done[0][IP].payload), raw(whole[IP].payload)[:len(whole[IP].payload) - padding_len(whole)]
            if got != want:
                self.fail(whole_name, "reassembled IPv4 payload differs: " + diff_offsets(want, got))
            if UDP in done[0]:
                self.check_bytes(whole_name + " (reassembled)", done[0], {})
        else:
            done = defragment6(frags)
            got, want = raw(done[IPv6]), raw(whole[IPv6])
            if got != want:
                self.fail(whole_name, "reassembled IPv6 datagram differs: " + diff_offsets(want, got))


def run_checks(packets, expectations):
    c = Checker()
    if len(packets) != len(expectations):
        c.fail("pcap", "%d packets but %d expectations" % (len(packets), len(expectations)))
        return c
    by_name = {}
    groups = {}
    for i, (pkt, exp) in enumerate(zip(packets, expectations)):
        name = exp["name"]
        by_name[name] = pkt
        us = round(float(pkt.time) * 1e6)
        c.expect_eq(name, "pcap timestamp (us)", us, BASE_TS_US + 1000 * i)
        c.check_packet(name, pkt, exp)
        if "fragment_of" in exp:
            groups.setdefault(exp["fragment_of"], []).append(pkt)
    for whole_name, frags in groups.items():
        c.check_reassembly(whole_name, by_name[whole_name], frags)
    return c


def negative_control(packets, expectations):
    """Damage packets the checks must then reject; returns what went undetected."""
    blind = []

    def damaged(index, offset_from_end=None, offset=None):
        b = bytearray(raw(packets[index]))
        at = offset if offset is not None else len(b) - offset_from_end
        b[at] ^= 0x01
        p = Ether(bytes(b))
        p.time = packets[index].time
        return p

    first = expectations[0]
    cases = {
        "ipv4 header checksum": damaged(0, offset=14 + 10),
        "udp length": damaged(0, offset=14 + 20 + 5),
        "udp checksum": damaged(0, offset=14 + 20 + 7),
        "payload byte": damaged(0, offset_from_end=1),
    }
    for what, pkt in cases.items():
        c = Checker()
        c.check_packet(first["name"], pkt, first)
        if not c.failures:
            blind.append(what)
    dns_index = next(i for i, e in enumerate(expectations) if "dns" in e)
    wrong = json.loads(json.dumps(expectations[dns_index]))
    wrong["dns"]["opt"]["options"][0]["source"] = 25
    c = Checker()
    c.check_packet(wrong["name"], packets[dns_index], wrong)
    if not c.failures:
        blind.append("ECS source prefix")
    return blind


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator", nargs="?", help="the scapy-sample executable")
    ap.add_argument("--pcap")
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pcap, jsonl = args.pcap, args.jsonl
        if args.generator:
            pcap, jsonl = os.path.join(tmp, "sample.pcap"), os.path.join(tmp, "sample.jsonl")
            if subprocess.run([args.generator, pcap, jsonl]).returncode != 0:
                print("scapy_check: FAILED: %s could not write the sample" % args.generator)
                return 1
        elif not (pcap and jsonl):
            ap.error("give the generator, or --pcap and --jsonl")
        packets = rdpcap(pcap)
        with open(jsonl) as f:
            expectations = [json.loads(line) for line in f if line.strip()]

    checker = run_checks(packets, expectations)
    blind = negative_control(packets, expectations) if not checker.failures else []
    for line in checker.failures:
        print("DISAGREE " + line)
    for what in blind:
        print("BLIND negative control: a damaged %s went undetected" % what)
    if checker.failures or blind:
        print("scapy_check: FAILED (%d disagreements, %d blind spots)" % (len(checker.failures), len(blind)))
        return 1
    print("scapy_check: %d packets agree with scapy (checksums, lengths, layers, DNS/EDNS0/ECS, "
          "reassembly of %d fragment groups); negative control detected" %
          (len(packets), sum(1 for e in expectations if "fragment_of" in e and e["name"].endswith("-0"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
