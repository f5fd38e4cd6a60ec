#!/usr/bin/env python3
"""Several workers agree with optgate-replay over fragmented traffic.

Runs the fragmented capture (tools/mkpcap --fragmented: the sample traffic
with every datagram of more than 56 bytes of payload cut into fragments,
some reversed, some sent twice) through `optgate` with 2 and then 3 workers
and software steering, and through optgate-replay (one worker), and checks:

  - every frame that is not a fragment of a TCP datagram (whole frames, and
    the fragments of UDP datagrams: DNS queries, reassembled, made Padding
    and cut again) comes out byte for byte as the replay tool writes it, in
    the same order per flow; the fragment and DNS counters agree;
  - every fragmented TCP datagram (an HTTP request) comes out, and where the
    replay tool overwrote identifier bytes the data plane did too: no
    identifier byte passes on a strip verdict.

The second point is weaker than byte agreement on purpose; it is the known
limit of steering (docs/dataplane.md#workers): fragments hash on addresses
only (later fragments carry no ports), so a fragmented TCP segment lands on
the worker its addresses choose, not always the one holding its flow's
state (which the SYN, unfragmented, reached by addresses and ports). That
worker reassembles it and reads it as a flow met mid-stream, in conservative
mode (docs/http.md#conservative-mode): it scrubs identifier values wherever
a line starts, and takes the verdict by address and port only. So it never
passes an identifier the replay tool strips, but it may strip one the
replay tool passes (a hostname-only collector), and its counters for HTTP
and verdicts may differ. The test prints how many TCP datagrams differed.

usage: multiworker_fragments.py OPTGATE OPTGATE_REPLAY FRAGMENTED_CAPTURE POLICY CONSENT
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import read_pcap  # noqa: E402
from multiworker import per_flow, run  # noqa: E402

from scapy.all import IP, Ether, IPv6, IPv6ExtHdrFragment  # noqa: E402

PROTO_TCP = 6


def tcp_fragment(frame):
    """(datagram key, offset, bytes) if the frame is a fragment of a TCP datagram, else None."""
    pkt = Ether(frame)
    if pkt.haslayer(IPv6ExtHdrFragment):
        ip6, fh = pkt[IPv6], pkt[IPv6ExtHdrFragment]
        if fh.nh != PROTO_TCP:
            return None
        raw = bytes(ip6)
        data = raw[len(raw) - len(bytes(fh)) + 8:40 + ip6.plen]  # after the fragment header, to the payload's end
        return ("v6", ip6.src, ip6.dst, fh.id), fh.offset * 8, data
    if pkt.haslayer(IP):
        ip = pkt[IP]
        if ip.proto != PROTO_TCP or (ip.flags.MF == 0 and ip.frag == 0):
            return None
        data = bytes(ip)[ip.ihl * 4:ip.len]
        return ("v4", ip.src, ip.dst, ip.id), ip.frag * 8, data
    return None


def split(frames):
    """The frames that are not fragments of TCP datagrams, and each TCP datagram's payload reassembled."""
    others, parts = [], collections.defaultdict(dict)
    for f in frames:
        t = tcp_fragment(f)
        if t is None:
            others.append(f)
        else:
            key, offset, data = t
            parts[key][offset] = data
    datagrams = {}
    for key, pieces in parts.items():
        whole = b""
        for offset in sorted(pieces):
            if offset != len(whole):
                raise SystemExit(f"datagram {key}: a hole or an overlap at {offset} in what left")
            whole += pieces[offset]
        datagrams[key] = whole
    return others, datagrams


def compared_counters(counters):
    return {k: v for k, v in counters.items() if k.startswith(("fragment_", "dns_"))}


def main():
    optgate, replay, capture, policy, consent = sys.argv[1:6]
    failures = []
    with tempfile.TemporaryDirectory(prefix="optgate-mwfrag-") as tmp:
        replayed, report = os.path.join(tmp, "replay.pcap"), os.path.join(tmp, "report.json")
        rp = subprocess.run([replay, "--quiet", "--policy", policy, "--consent", consent, "--report", report,
                             capture, replayed], capture_output=True, text=True, timeout=120)
        if rp.returncode != 0:
            print(rp.stdout, rp.stderr)
            raise SystemExit(f"optgate-replay exited {rp.returncode}")
        with open(report) as f:
            r = json.load(f)
        _, sent = split(read_pcap(capture))
        want_others, want_tcp = split(read_pcap(replayed))
        want = per_flow(want_others)
        # What the replay tool overwrote in each TCP datagram's payload (after
        # the TCP header, whose checksum changes too): identifier bytes on a strip verdict.
        stripped = {k: [i for i, (a, b) in enumerate(zip(sent[k], want_tcp[k]))
                        if a != b and i >= (sent[k][12] >> 4) * 4] for k in want_tcp}
        if not want_tcp or not any(stripped.values()):
            failures.append("the capture exercised too little: no fragmented TCP datagram was rewritten by the replay")
        if r["counters"].get("fragment_reassembled", 0) == 0 or r["counters"].get("dns_rewritten", 0) == 0:
            failures.append("the capture exercised too little: no fragmented DNS query rewritten by the replay")

        for lcores, workers in (("0-1", 2), ("(0-2)@(0-1)", 3)):
            tag = f"{workers} workers"
            got, to_sub, s = run(optgate, capture, policy, consent, tmp, lcores, workers)
            if to_sub:
                failures.append(f"{tag}: frames left the subscriber port, but all input came in on it")
            got_others, got_tcp = split(got)
            have = per_flow(got_others)
            bad = [k for k in set(want) | set(have) if have.get(k) != want.get(k)]
            if bad:
                failures.append(f"{tag}: {len(bad)} flows (not fragmented TCP) differ in bytes or order, "
                                f"e.g. {sorted(bad, key=str)[0]}")
            if set(got_tcp) != set(want_tcp):
                failures.append(f"{tag}: fragmented TCP datagrams out {sorted(got_tcp, key=str)}, "
                                f"the replay tool gives {sorted(want_tcp, key=str)}")
            differ = 0
            for k in set(got_tcp) & set(want_tcp):
                g, w = got_tcp[k], want_tcp[k]
                if g == w:
                    continue
                differ += 1
                if len(g) != len(w):
                    failures.append(f"{tag}: TCP datagram {k}: {len(g)} bytes out, the replay tool gives {len(w)}")
                    continue
                leaked = [i for i in stripped[k] if g[i] == sent[k][i]]
                if leaked:
                    failures.append(f"{tag}: TCP datagram {k}: identifier bytes the replay tool strips passed "
                                    f"at offsets {leaked[:8]}: {g[leaked[0]:leaked[0] + 24]!r}")
            per_worker = s.get("per_worker", [])
            if len(per_worker) != workers or any(w["packets"] == 0 for w in per_worker):
                failures.append(f"{tag}: not every worker processed frames: {per_worker}")
            if s["driver"]["steered"] == 0:
                failures.append(f"{tag}: no frame was handed to another worker")
            mine, theirs = compared_counters(s["counters"]), compared_counters(r["counters"])
            if mine != theirs:
                diff = {k: (mine.get(k), theirs.get(k)) for k in set(mine) | set(theirs)
                        if mine.get(k) != theirs.get(k)}
                failures.append(f"{tag}: fragment/DNS counters differ (optgate, replay): {diff}")
            print(f"{tag}: {len(got)} frames; {len(want_tcp)} fragmented TCP datagrams, {differ} unlike the replay "
                  f"tool's (read on a worker without their flow's state, in conservative mode), none passing a "
                  f"stripped identifier; "
                  f"{s['driver']['steered']} frames handed over")

    if failures:
        print("\n".join(failures))
        raise SystemExit(1)
    print("multi-worker output over fragments agrees with optgate-replay (TCP fragments: by verdict)")


if __name__ == "__main__":
    main()
