#!/usr/bin/env python3
"""The DPDK data plane and optgate-replay share one core: pin that they agree.

Runs `optgate` (DPDK, net_pcap virtual devices, --no-huge) and `optgate-replay`
over the same capture with the same policy and consent, then checks that the
frames leaving the data plane's internet port are byte for byte the frames
optgate-replay writes, in the same order, and that both count the same.

usage: agreement.py OPTGATE OPTGATE_REPLAY CAPTURE POLICY CONSENT [POLICY_LINE]

POLICY_LINE, if given, is appended to the policy (e.g. "encapsulations:
[pppoe, gre]" for the mixed encapsulated capture).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile


def read_pcap(path):
    """Frames of a classic pcap file (either byte order, micro or nano)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise SystemExit(f"{path}: not a pcap file")
    frames, off = [], 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        frames.append(data[off:off + caplen])
        off += caplen
    return frames


def remove_runtime_dir(prefix):
    """EAL's runtime directory (the telemetry socket) outlives the process."""
    shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)


def write_empty_pcap(directory):
    """A pcap with no packets: the rx side of a port that receives nothing."""
    path = os.path.join(directory, "empty.pcap")
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return path


def main():
    optgate, replay, capture, policy, consent = sys.argv[1:6]
    with tempfile.TemporaryDirectory(prefix="optgate-agreement-") as tmp:
        if len(sys.argv) > 6:
            with open(policy) as f:
                text = f.read()
            policy = os.path.join(tmp, "policy.yaml")
            with open(policy, "w") as f:
                f.write(text + "\n" + sys.argv[6] + "\n")
        empty = write_empty_pcap(tmp)
        to_internet = os.path.join(tmp, "to_internet.pcap")
        to_subscribers = os.path.join(tmp, "to_subscribers.pcap")
        stats = os.path.join(tmp, "stats.json")
        cmd = [optgate, "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
               "--file-prefix", f"optgate-agreement-{os.getpid()}", "--log-level", "warning",
               f"--vdev=net_pcap0,rx_pcap={capture},tx_pcap={to_subscribers}",
               f"--vdev=net_pcap1,rx_pcap={empty},tx_pcap={to_internet}",
               "--", "--policy", policy, "--consent", consent, "--idle-exit-ms", "500", "--stats", stats]
        dp = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        remove_runtime_dir(f"optgate-agreement-{os.getpid()}")
        if dp.returncode != 0:
            print(dp.stdout, dp.stderr)
            raise SystemExit(f"optgate exited {dp.returncode}")

        replayed = os.path.join(tmp, "replay.pcap")
        report = os.path.join(tmp, "report.json")
        rp = subprocess.run([replay, "--quiet", "--policy", policy, "--consent", consent, "--report", report,
                             capture, replayed], capture_output=True, text=True, timeout=120)
        if rp.returncode != 0:
            print(rp.stdout, rp.stderr)
            raise SystemExit(f"optgate-replay exited {rp.returncode}")

        dpdk_frames = read_pcap(to_internet)
        replay_frames = read_pcap(replayed)
        failures = []
        if read_pcap(to_subscribers):
            failures.append("frames left the subscriber port, but none were sent towards it")
        if len(dpdk_frames) != len(replay_frames):
            failures.append(f"{len(dpdk_frames)} frames from optgate, {len(replay_frames)} from optgate-replay")
        for i, (a, b) in enumerate(zip(dpdk_frames, replay_frames)):
            if a != b:
                failures.append(f"frame {i} differs:\n  optgate: {a.hex()}\n  replay:  {b.hex()}")
                break
        changed = sum(1 for a, b in zip(read_pcap(capture), replay_frames) if a != b)
        if changed == 0:
            failures.append("the capture exercised nothing: no frame was rewritten")

        with open(stats) as f:
            s = json.load(f)
        with open(report) as f:
            r = json.load(f)
        for key in ("packets", "destinations", "identifiers"):
            if s[key] != r[key]:
                failures.append(f"'{key}' differs:\n  optgate: {s[key]}\n  replay:  {r[key]}")
        if s["counters"] != r["counters"]:
            diff = {k: (s["counters"][k], r["counters"].get(k)) for k in s["counters"]
                    if s["counters"][k] != r["counters"].get(k)}
            failures.append(f"counters differ (optgate, replay): {diff}")
        if s["driver"]["rx"] != len(read_pcap(capture)):
            failures.append(f"optgate received {s['driver']['rx']} frames of {len(read_pcap(capture))}")

        if failures:
            print("\n".join(failures))
            raise SystemExit(1)
        print(f"optgate and optgate-replay agree on {len(replay_frames)} frames ({changed} rewritten)")


if __name__ == "__main__":
    main()
