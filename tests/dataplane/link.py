#!/usr/bin/env python3
"""Link-fault propagation (docs/deploy.md#link-faults) on veth pairs.

    netns og-la-PID              root netns                   netns og-lb-PID
    a0 ── veth ── ola-PID ═ optgate (net_af_packet) ═ olb-PID ── veth ── b0
                  port 0 (subscribers)   port 1 (internet)

`ip link set a0 down` in one namespace takes optgate's subscriber link
away; optgate must take its internet port down, which b0 in the other
namespace sees as carrier loss; `ip link set a0 up` must bring both back.
Then the same from the other side. Each step waits (polling, with a
generous deadline) for the carrier the neighbour sees. At SIGTERM optgate
exits 0 with every link up.

usage: link.py OPTGATE POLICY CONSENT
Needs root (network namespaces, af_packet) and ip.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PATIENCE = 60  # seconds: a generous deadline for what should happen (tests/consentd/daemon.py)
PID = os.getpid()
NS = {"a": f"og-la-{PID}", "b": f"og-lb-{PID}"}
ROOT = {"a": f"ola-{PID}", "b": f"olb-{PID}"}  # optgate's ports
INNER = {"a": "a0", "b": "b0"}
MAC = {"a": ("02:00:00:00:1a:01", "02:00:00:00:1a:02"), "b": ("02:00:00:00:1b:01", "02:00:00:00:1b:02")}


def run(cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=PATIENCE)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def in_ns(side, *cmd):
    return ["ip", "netns", "exec", NS[side], *cmd]


def carrier(side):
    """The carrier the neighbour's end (a0 or b0) sees: 1 or 0."""
    r = run(in_ns(side, "cat", f"/sys/class/net/{INNER[side]}/carrier"), check=False)
    return r.stdout.strip()


def wait_for(what, cond):
    deadline = time.monotonic() + PATIENCE
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {PATIENCE} s waiting for {what}")
        time.sleep(0.05)


def topology_up():
    for side in ("a", "b"):
        run(["ip", "netns", "add", NS[side]])
        run(["ip", "link", "add", ROOT[side], "address", MAC[side][0], "type", "veth",
             "peer", "name", INNER[side], "address", MAC[side][1], "netns", NS[side]])
        run(["ip", "link", "set", ROOT[side], "up"])
        run(in_ns(side, "ip", "link", "set", INNER[side], "up"))


def topology_down():
    for side in ("a", "b"):
        run(["ip", "netns", "del", NS[side]], check=False)
        if os.path.exists(f"/sys/class/net/{ROOT[side]}"):
            run(["ip", "link", "del", ROOT[side]], check=False)


def main():
    optgate, policy, consent = sys.argv[1:4]
    if os.geteuid() != 0:
        raise SystemExit("link.py needs root (network namespaces, af_packet)")
    prefix = f"optgate-link-{PID}"
    err_lines = []
    p = None
    ok = False
    try:
        topology_up()
        cmd = [optgate, "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", prefix,
               f"--vdev=net_af_packet0,iface={ROOT['a']}", f"--vdev=net_af_packet1,iface={ROOT['b']}",
               "--", "--policy", policy, "--consent", consent, "--idle-sleep-us", "100", "--no-metrics"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        forwarding = threading.Event()

        def read_stderr():
            for line in p.stderr:
                err_lines.append(line)
                if "forwarding between" in line:
                    forwarding.set()

        threading.Thread(target=read_stderr, daemon=True).start()
        if not forwarding.wait(PATIENCE):
            raise RuntimeError("optgate did not start")
        for down, other in (("a", "b"), ("b", "a")):
            wait_for(f"carrier on {INNER[other]}", lambda: carrier(other) == "1")
            run(in_ns(down, "ip", "link", "set", INNER[down], "down"))
            wait_for(f"{INNER[other]} to lose its carrier after {INNER[down]} went down",
                     lambda: carrier(other) == "0")
            run(in_ns(down, "ip", "link", "set", INNER[down], "up"))
            wait_for(f"{INNER[other]}'s carrier back after {INNER[down]} came up", lambda: carrier(other) == "1")
            wait_for(f"{INNER[down]}'s carrier back", lambda: carrier(down) == "1")
        log = "".join(err_lines)
        for side in ("subscriber", "internet"):
            if f"link down on the {side} port" not in log or f"link up again on the {side} port" not in log:
                raise RuntimeError(f"the {side} port's fault was not logged")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=PATIENCE)
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode} after SIGTERM")
        ok = True
    except Exception as e:  # noqa: BLE001: reported with optgate's log below
        print(f"FAILED: {e}")
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        topology_down()
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    if not ok:
        print("optgate's log:", "".join(err_lines)[-3000:])
        raise SystemExit(1)
    print("link down on either side: the other port went down, and both came back up")


if __name__ == "__main__":
    main()
