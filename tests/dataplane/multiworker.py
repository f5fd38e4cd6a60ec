#!/usr/bin/env python3
"""Several workers with software steering agree with optgate-replay.

Builds a capture of many interleaved HTTP flows whose identifier header is
split across two TCP segments (plus the sample capture), runs it through
`optgate` with 2 and then 3 workers (virtual devices have no RSS, so frames
are hashed in software and handed over rings; with 3 workers one worker
polls no port and the ports' single tx queues are fed through rings), and
checks against optgate-replay on the same capture:
  - the same frames come out, as a multiset, and in the same order per flow;
  - every worker processed frames and the counters agree.
A flow whose segments reached two workers would meet the second worker's
HTTP stage mid-stream without the first segment's state: its identifier
would not be scrubbed the way the replay tool scrubs it, and the bytes
would differ.

With a sixth argument `encapsulated`, every frame of those flows travels in
a tunnel the policy enables (docs/pipeline.md#encapsulations), the tunnel
changing from frame to frame: VXLAN with a random outer source port, GTP-U
from a random port, PPPoE. Only the inner flow is the same, so only steering
on the inner flow keeps a flow on one worker.

usage: multiworker.py OPTGATE OPTGATE_REPLAY SAMPLE_CAPTURE POLICY CONSENT [encapsulated]
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import read_pcap, remove_runtime_dir, write_empty_pcap  # noqa: E402

from scapy.all import Ether, IP, IPv6, PPP, PPPoE, TCP, UDP, Raw, wrpcap  # noqa: E402
from scapy.contrib.gtp import GTP_U_Header  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

ENCAPSULATIONS = "encapsulations: [pppoe, vxlan, gtpu]"

SUB_MAC, NET_MAC = "02:00:00:00:01:01", "02:00:00:00:02:02"
COLLECTOR = "203.0.113.10"
# sub-1001 consented to advertising, sub-1005 did not, the rest are unknown.
SOURCES = ["100.64.0.10", "100.64.0.12"] + [f"100.64.7.{i}" for i in range(1, 60)]


def http_flow(src, sport, value):
    """One keep-alive HTTP exchange whose X-UIDH value spans two segments."""
    up = Ether(src=SUB_MAC, dst=NET_MAC) / IP(src=src, dst=COLLECTOR)
    down = Ether(src=NET_MAC, dst=SUB_MAC) / IP(src=COLLECTOR, dst=src)
    first = f"GET /px HTTP/1.1\r\nHost: ads.example\r\nX-UIDH: {value[:5]}".encode()
    second = f"{value[5:]}\r\nAccept: */*\r\n\r\n".encode()
    reply = b"HTTP/1.1 204 No Content\r\n\r\n"
    c, s = 1000, 5000
    return [
        up / TCP(sport=sport, dport=80, flags="S", seq=c - 1),
        down / TCP(sport=80, dport=sport, flags="SA", seq=s - 1, ack=c),
        up / TCP(sport=sport, dport=80, flags="A", seq=c, ack=s),
        up / TCP(sport=sport, dport=80, flags="PA", seq=c, ack=s) / Raw(first),
        up / TCP(sport=sport, dport=80, flags="PA", seq=c + len(first), ack=s) / Raw(second),
        down / TCP(sport=80, dport=sport, flags="PA", seq=s, ack=c + len(first) + len(second)) / Raw(reply),
    ]


def dns_flow(src, sport):
    q = bytes.fromhex("abcd01000001000000000001") + b"\x07example\x03com\x00\x00\x01\x00\x01"
    ecs = bytes.fromhex("0008000700011800") + bytes([100, 64, 7])
    opt = b"\x00\x00\x29\x10\x00\x00\x00\x00\x00" + len(ecs).to_bytes(2, "big") + ecs
    return [Ether(src=SUB_MAC, dst=NET_MAC) / IP(src=src, dst="198.18.0.53") / UDP(sport=sport, dport=53) /
            Raw(q + opt)]


def encapsulate(frame, n):
    """The frame inside a tunnel that changes with n (same inner packet)."""
    outer = Ether(src=frame.src, dst=frame.dst)
    tunnel = IP(src="198.18.5.1", dst="198.18.5.2")
    if n % 3 == 0:
        return outer / tunnel / UDP(sport=40000 + (n * 7919) % 20000, dport=4789) / VXLAN(flags=0x08, vni=7) / frame
    if n % 3 == 1:
        return outer / tunnel / UDP(sport=30000 + n % 1000, dport=2152) / GTP_U_Header(teid=5, gtp_type=255) / frame[IP]
    return outer / PPPoE(sessionid=9) / PPP(proto=0x0021) / frame[IP]


def build_capture(path, sample, encapsulated=False):
    flows = []
    for i in range(300):
        src = SOURCES[i % len(SOURCES)]
        flows.append(http_flow(src, 20000 + i, f"uidh-{i:05d}-secret"))
        if i % 3 == 0:
            flows.append(dns_flow(src, 30000 + i))
    frames = []
    # Interleave the flows so that per-flow order is a real constraint.
    while any(flows):
        for f in flows:
            if f:
                frames.append(f.pop(0))
    if encapsulated:
        frames = [encapsulate(f, n) for n, f in enumerate(frames)]
    wrpcap(path, frames)
    with open(path, "ab") as out, open(sample, "rb") as extra:
        data = extra.read()
        out.write(data[24:])  # same link type and byte order: append the sample's records
    return path


def flow_key(frame):
    pkt = Ether(frame)
    ip, l4 = None, None
    for layer in pkt.iterpayloads():  # the innermost IP packet and its TCP/UDP
        if isinstance(layer, (IP, IPv6)):
            ip, l4 = layer, None
        elif isinstance(layer, (TCP, UDP)) and l4 is None:
            l4 = layer
    if ip is None:
        return ("non-ip",)
    ports = (l4.sport, l4.dport) if l4 is not None and not (pkt.haslayer(IP) and pkt[IP].frag) else (0, 0)
    a, b = (ip.src, ports[0]), (ip.dst, ports[1])
    return (ip.__class__.__name__,) + tuple(sorted([a, b]))


def per_flow(frames):
    flows = collections.defaultdict(list)
    for f in frames:
        flows[flow_key(f)].append(f)
    return flows


def run(optgate, capture, policy, consent, tmp, lcores, workers):
    empty = write_empty_pcap(tmp)
    to_inet = os.path.join(tmp, f"w{workers}.to_internet.pcap")
    to_sub = os.path.join(tmp, f"w{workers}.to_subscribers.pcap")
    stats = os.path.join(tmp, f"w{workers}.stats.json")
    cmd = [optgate, "--lcores", lcores, "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
           "--file-prefix", f"optgate-mw-{os.getpid()}-{workers}", "--log-level", "warning",
           f"--vdev=net_pcap0,rx_pcap={capture},tx_pcap={to_sub}",
           f"--vdev=net_pcap1,rx_pcap={empty},tx_pcap={to_inet}",
           "--", "--policy", policy, "--consent", consent, "--steering", "software",
           "--worker-lcores", ",".join(str(i) for i in range(workers)),  # the main lcore works too
           "--idle-sleep-us", "50", "--idle-exit-ms", "1500", "--stats", stats]
    dp = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    remove_runtime_dir(f"optgate-mw-{os.getpid()}-{workers}")
    if dp.returncode != 0:
        print(dp.stdout, dp.stderr)
        raise SystemExit(f"optgate ({workers} workers) exited {dp.returncode}")
    with open(stats) as f:
        return read_pcap(to_inet), read_pcap(to_sub), json.load(f)


def main():
    optgate, replay, sample, policy, consent = sys.argv[1:6]
    encapsulated = sys.argv[6:] == ["encapsulated"]
    failures = []
    with tempfile.TemporaryDirectory(prefix="optgate-multiworker-") as tmp:
        if encapsulated:
            with open(policy) as f:
                text = f.read()
            policy = os.path.join(tmp, "policy.yaml")
            with open(policy, "w") as f:
                f.write(text + "\n" + ENCAPSULATIONS + "\n")
        capture = build_capture(os.path.join(tmp, "flows.pcap"), sample, encapsulated)
        replayed, report = os.path.join(tmp, "replay.pcap"), os.path.join(tmp, "report.json")
        rp = subprocess.run([replay, "--quiet", "--policy", policy, "--consent", consent, "--report", report,
                             capture, replayed], capture_output=True, text=True, timeout=120)
        if rp.returncode != 0:
            print(rp.stdout, rp.stderr)
            raise SystemExit(f"optgate-replay exited {rp.returncode}")
        expected = read_pcap(replayed)
        with open(report) as f:
            r = json.load(f)
        inputs = read_pcap(capture)
        rewritten = sum(1 for a, b in zip(inputs, expected) if a != b)
        if rewritten < 200:
            failures.append(f"the capture exercised too little: {rewritten} frames rewritten by the replay")
        want = per_flow(expected)

        for lcores, workers in (("0-1", 2), ("(0-2)@(0-1)", 3)):
            got, to_sub, s = run(optgate, capture, policy, consent, tmp, lcores, workers)
            tag = f"{workers} workers"
            if to_sub:
                failures.append(f"{tag}: frames left the subscriber port, but all input came in on it")
            if len(got) != len(expected):
                failures.append(f"{tag}: {len(got)} frames out, the replay tool gives {len(expected)}")
            if collections.Counter(got) != collections.Counter(expected):
                failures.append(f"{tag}: the frames differ from the replay tool's (as a multiset)")
            have = per_flow(got)
            bad = [k for k in want if have.get(k) != want[k]]
            if bad:
                failures.append(f"{tag}: {len(bad)} flows differ in bytes or order, e.g. {bad[0]}")
            if s["driver"]["workers"] != workers or s["driver"]["steering"] != "software":
                failures.append(f"{tag}: ran with {s['driver']}")
            per_worker = s.get("per_worker", [])
            if len(per_worker) != workers or any(w["packets"] == 0 for w in per_worker):
                failures.append(f"{tag}: not every worker processed frames: {per_worker}")
            if s["driver"]["steered"] == 0:
                failures.append(f"{tag}: no frame was handed to another worker")
            for key in ("packets", "destinations", "identifiers", "counters"):
                if s[key] != r[key]:
                    failures.append(f"{tag}: '{key}' differs from the replay tool's")
            print(f"{tag}: {len(got)} frames, {len(want)} flows, per worker "
                  f"{[w['packets'] for w in per_worker]} packets, {s['driver']['steered']} handed over")

    if failures:
        print("\n".join(failures))
        raise SystemExit(1)
    print(f"multi-worker output matches optgate-replay ({rewritten} frames rewritten)")


if __name__ == "__main__":
    main()
