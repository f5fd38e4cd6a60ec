#!/usr/bin/env python3
"""optgate --control without bootstrap_policy, before consentd's first
snapshot (docs/deploy.md#failure-behaviour): every frame is dropped (fail
closed: without a policy nothing is known about identifiers), the log says so
next to "forwarding", and stats_file is written all the same, with every
frame counted as no_policy_dropped.

usage: no_policy.py OPTGATE CAPTURE
"""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import read_pcap, remove_runtime_dir, write_empty_pcap  # noqa: E402


def main():
    optgate, capture = sys.argv[1], sys.argv[2]
    frames = len(read_pcap(capture))
    failures = []
    with tempfile.TemporaryDirectory(prefix="optgate-no-policy-") as tmp:
        prefix = f"optgate-no-policy-{os.getpid()}"
        out = os.path.join(tmp, "to_internet.pcap")
        stats = os.path.join(tmp, "stats.json")
        # Nobody listens on this socket: no table ever arrives.
        cmd = [optgate, "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", prefix,
               f"--vdev=net_pcap0,rx_pcap={capture},tx_pcap={os.path.join(tmp, 'to_subscribers.pcap')}",
               f"--vdev=net_pcap1,rx_pcap={write_empty_pcap(tmp)},tx_pcap={out}",
               "--", "--control", os.path.join(tmp, "nobody.sock"), "--name", "no-policy",
               "--idle-exit-ms", "500", "--stats", stats]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        remove_runtime_dir(prefix)
        log = r.stdout + r.stderr
        if r.returncode != 0:
            raise SystemExit(f"optgate exited {r.returncode}:\n{log}")
        if "no policy yet: every frame is dropped until consentd's first snapshot" not in log:
            failures.append("the log does not say that frames are dropped until the first snapshot:\n" + log)
        forwarded = len(read_pcap(out)) if os.path.exists(out) else 0
        if forwarded:
            failures.append(f"{forwarded} frames forwarded without a policy")
        if not os.path.exists(stats):
            failures.append("stats_file not written when no table arrived")
        else:
            with open(stats) as f:
                j = json.load(f)
            got = (j["packets"]["in"], j["counters"]["no_policy_dropped"], j["packets"]["out"])
            if got != (frames, frames, 0):
                failures.append(f"stats (in, no_policy_dropped, out) = {got}, wanted ({frames}, {frames}, 0)")
    if failures:
        print("\n".join(failures))
        raise SystemExit(1)
    print(f"no policy: {frames} frames dropped and counted, the log says so, stats_file written")


if __name__ == "__main__":
    main()
