#!/usr/bin/python3
"""Loading a large static consent file (docs/benchmarks.md, "Consent file,
1M subscribers"): the same N subscribers written as YAML and as NDJSON, each
loaded by `optgatectl check POLICY --consent FILE` (the loader `optgate
--consent` and `optgate-replay --consent` use) and by `optgate-replay` over
a one-frame capture (load, fill the consent table, replay), under
/usr/bin/time for wall clock, CPU and peak RSS. The YAML runs are the
same-run baseline.

  /usr/bin/python3 bench/consent_file.py [--build build] [--subscribers 1000000]
      [--formats ndjson,yaml] [--runs 3] [--dir /var/tmp/optgate-consent-bench]

Subscriber i: id s<i>, IPv4 100.64.0.0 + i + 1, every fourth also an IPv6
/64 in 2001:db8:1000::/36; a quarter each consenting to nothing, to
advertising, to analytics and to both (config/policy.example.yaml).
"""
import argparse
import ipaddress
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY = os.path.join(ROOT, "config", "policy.example.yaml")


def subscribers(n):
    v4 = int(ipaddress.IPv4Address("100.64.0.0"))
    v6 = int(ipaddress.IPv6Address("2001:db8:1000::"))
    for i in range(n):
        addresses = [str(ipaddress.IPv4Address(v4 + i + 1))]
        if i % 4 == 0:
            addresses.append(f"{ipaddress.IPv6Address(v6 + ((i // 4) << 64))}/64")
        consents = [[], ["advertising"], ["analytics"], ["advertising", "analytics"]][i % 4]
        yield f"s{i}", addresses, consents


def write_files(n, d):
    os.makedirs(d, exist_ok=True)
    paths = {"ndjson": os.path.join(d, f"consent-{n}.ndjson"), "yaml": os.path.join(d, f"consent-{n}.yaml")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    with open(paths["ndjson"], "w") as nd, open(paths["yaml"], "w") as y:
        y.write("subscribers:\n")
        for sid, addresses, consents in subscribers(n):
            nd.write(json.dumps({"id": sid, "addresses": addresses, "consents": consents}) + "\n")
            y.write(f"  - id: {sid}\n    addresses: [{', '.join(json.dumps(a) for a in addresses)}]\n"
                    f"    consents: [{', '.join(consents)}]\n")
    return paths


def one_frame_pcap(path):
    """A pcap of one UDP frame from a subscriber (no scapy needed)."""
    import struct
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    payload = b"x" * 8
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     ipaddress.IPv4Address("100.64.0.2").packed, ipaddress.IPv4Address("198.18.0.1").packed)
    s = sum(struct.unpack("!10H", ip))
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    ip = ip[:10] + struct.pack("!H", ~s & 0xffff) + ip[12:]
    frame = eth + ip + udp
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)


def timed(cmd):
    """(wall s, user+sys s, max RSS MiB, exit status, stdout+stderr) of cmd under /usr/bin/time."""
    p = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %M"] + cmd,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    m = re.search(r"TIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)", p.stdout)
    wall, user, sys_, rss = float(m[1]), float(m[2]), float(m[3]), int(m[4]) / 1024
    return wall, user + sys_, rss, p.returncode, p.stdout[:m.start()].strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--formats", default="ndjson,yaml")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp/optgate-consent-bench")
    a = ap.parse_args()
    ctl = os.path.join(a.build, "src", "ctl", "optgatectl")
    replay = os.path.join(a.build, "src", "replay", "optgate-replay")
    paths = write_files(a.subscribers, a.dir)
    pcap_in, pcap_out = os.path.join(a.dir, "one.pcap"), os.path.join(a.dir, "out.pcap")
    one_frame_pcap(pcap_in)
    for fmt in a.formats.split(","):
        size = os.path.getsize(paths[fmt]) / 2**20
        print(f"{fmt}: {paths[fmt]} ({size:.0f} MiB, {a.subscribers} subscribers)", flush=True)
        for run in range(a.runs):
            for name, cmd in (("optgatectl check", [ctl, "check", POLICY, "--consent", paths[fmt]]),
                              ("optgate-replay", [replay, "--policy", POLICY, "--consent", paths[fmt], "--quiet",
                                                  pcap_in, pcap_out])):
                wall, cpu, rss, rc, out = timed(cmd)
                if rc != 0:
                    print(f"  {name} exited {rc}: {out[-500:]}")
                    return 1
                print(f"  run {run + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:.0f} MiB peak RSS",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
