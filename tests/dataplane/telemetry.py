#!/usr/bin/env python3
"""optgate's DPDK telemetry commands, its log stream, and clean shutdown.

Runs optgate with two workers on the sample capture, reads /optgate/stats,
/optgate/workers and /optgate/collectors from the telemetry socket while it
runs, then stops it with SIGTERM and checks that it drains, prints its final
counters and writes the stats file, and that EAL's log lines and optgate's
share stderr (stdout carries only the summary).

usage: telemetry.py OPTGATE SAMPLE_CAPTURE POLICY CONSENT
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import read_pcap, remove_runtime_dir, write_empty_pcap  # noqa: E402

PATIENCE = 60  # seconds: a generous deadline for what should happen (tests/consentd/daemon.py)


def query(path, commands):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    json.loads(s.recv(16384))  # the greeting
    out = {}
    for c in commands:
        s.send(c.encode())
        out.update(json.loads(s.recv(65536)))
    s.close()
    return out


def main():
    optgate, capture, policy, consent = sys.argv[1:5]
    prefix = f"optgate-tel-{os.getpid()}"
    sock = f"/var/run/dpdk/{prefix}/dpdk_telemetry.v2"
    failures = []
    frames = len(read_pcap(capture))
    with tempfile.TemporaryDirectory(prefix="optgate-telemetry-") as tmp:
        empty = write_empty_pcap(tmp)
        stats = os.path.join(tmp, "stats.json")
        cmd = [optgate, "-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", prefix,
               f"--vdev=net_pcap0,rx_pcap={capture},tx_pcap={os.path.join(tmp, 'a.pcap')}",
               f"--vdev=net_pcap1,rx_pcap={empty},tx_pcap={os.path.join(tmp, 'b.pcap')}",
               "--", "--policy", policy, "--consent", consent, "--worker-lcores", "0,1",
               "--idle-sleep-us", "100", "--duration", "300",  # stopped below
               "--stats", stats]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            t = None
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline:
                if os.path.exists(sock):
                    try:
                        t = query(sock, ["/optgate/stats", "/optgate/workers", "/optgate/collectors"])
                        if t["/optgate/stats"]["rx"] == frames:
                            break
                    except (OSError, ValueError, KeyError, TypeError):  # not registered yet
                        pass
                time.sleep(0.2)
            if t is None:
                failures.append("no telemetry socket or no answer")
            else:
                st = t["/optgate/stats"]
                if st["rx"] != frames or st["packets"] != frames:
                    failures.append(f"/optgate/stats: rx {st['rx']}, packets {st['packets']}, capture {frames}")
                if st["table_health"] != "fresh" or st["workers"] != 2:
                    failures.append(f"/optgate/stats: {st['table_health']}, {st['workers']} workers")
                if st["verdict_strip_no_consent"] == 0 or st["http_rewritten"] == 0:
                    failures.append("/optgate/stats: no strip counted")
                w = t["/optgate/workers"]
                if sorted(w) != ["worker0", "worker1"] or sum(x["packets"] for x in w.values()) != frames:
                    failures.append(f"/optgate/workers: {w}")
                c = t["/optgate/collectors"]
                if c.get("example_adnet", {}).get("stripped", 0) == 0 or "exemption/billing_fraud" not in c:
                    failures.append(f"/optgate/collectors: {c}")
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=PATIENCE)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
            remove_runtime_dir(prefix)
        if p.returncode != 0:
            failures.append(f"exit {p.returncode} after SIGTERM")
        if "signal SIGTERM: draining" not in err:
            failures.append("the drain was not logged")
        if "EAL:" not in err or "EAL:" in out:
            failures.append("EAL's log is not on stderr alone")
        if f"driver: {frames} received, {frames} sent" not in out:
            failures.append(f"final counters missing from stdout: {out!r}")
        try:
            with open(stats) as f:
                s = json.load(f)
            if s["driver"]["rx"] != frames or len(s["per_worker"]) != 2:
                failures.append(f"stats file: {s['driver']}")
        except (OSError, ValueError) as e:
            failures.append(f"stats file: {e}")
    if failures:
        print("\n".join(failures))
        print("stderr:", err[-3000:] if 'err' in dir() else "")
        raise SystemExit(1)
    print(f"telemetry answered ({frames} frames over 2 workers); SIGTERM drained and reported")


if __name__ == "__main__":
    main()
