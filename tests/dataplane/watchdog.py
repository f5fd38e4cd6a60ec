#!/usr/bin/env python3
"""optgate and systemd's watchdog (docs/deploy.md#watchdog), on a socket
standing in for systemd's $NOTIFY_SOCKET.

Runs optgate (two workers, static consent, the sample capture) as systemd
would with WatchdogSec=0.4s: READY=1 must arrive, then WATCHDOG=1 again and
again while the workers loop (busy, then idle). Then SIGUSR2 stalls worker 1
on purpose (--test-stall-worker 1): optgate must log it and send no
WATCHDOG=1 any more, so that systemd would restart it; SIGTERM still stops
it with STOPPING=1.

usage: watchdog.py OPTGATE SAMPLE_CAPTURE POLICY CONSENT
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import remove_runtime_dir, write_empty_pcap  # noqa: E402

PATIENCE = 60  # seconds: a generous deadline for what should happen (tests/consentd/daemon.py)
WATCHDOG_USEC = 1000000  # optgate pings every 0.5 s
# After the stall is logged, no ping may come within this long: 4 intervals
# (what must not happen: a slow machine can only make it pass).
QUIET = 2.0


def main():
    optgate, capture, policy, consent = sys.argv[1:5]
    prefix = f"optgate-wd-{os.getpid()}"
    failures = []
    err_lines = []
    with tempfile.TemporaryDirectory(prefix="optgate-watchdog-") as tmp:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(os.path.join(tmp, "notify"))
        notify.settimeout(PATIENCE)
        empty = write_empty_pcap(tmp)
        cmd = [optgate, "-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", prefix,
               f"--vdev=net_pcap0,rx_pcap={capture},tx_pcap={os.path.join(tmp, 'a.pcap')}",
               f"--vdev=net_pcap1,rx_pcap={empty},tx_pcap={os.path.join(tmp, 'b.pcap')}",
               "--", "--policy", policy, "--consent", consent, "--worker-lcores", "0,1",
               "--idle-sleep-us", "100", "--duration", "300", "--no-metrics", "--test-stall-worker", "1"]
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(tmp, "notify"), WATCHDOG_USEC=str(WATCHDOG_USEC))
        env.pop("WATCHDOG_PID", None)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        stalled = threading.Event()
        hook = threading.Event()

        def read_stderr():
            for line in p.stderr:
                err_lines.append(line)
                if "test: stalling worker 1" in line:
                    hook.set()
                # Only after the hook: a worker starved by a busy machine
                # may miss one look before it.
                if hook.is_set() and "worker 1 (lcore 1) made no progress" in line:
                    stalled.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            first = notify.recv(4096).decode()
            if not first.startswith("READY=1\n") or "forwarding between" not in first:
                failures.append(f"first notification: {first!r}")
            for i in range(5):
                msg = notify.recv(4096).decode()
                if msg != "WATCHDOG=1":
                    failures.append(f"notification {i + 2}: {msg!r}")
            p.send_signal(signal.SIGUSR2)
            if not stalled.wait(PATIENCE):
                failures.append("the stalled worker was not logged")
            else:
                # Pings sent before the log line are queued already: drop them.
                notify.setblocking(False)
                try:
                    while True:
                        notify.recv(4096)
                except BlockingIOError:
                    pass
                notify.settimeout(QUIET)
                try:
                    msg = notify.recv(4096).decode()
                    failures.append(f"after the stall: {msg!r}")
                except socket.timeout:
                    pass  # no ping: systemd would restart optgate
            notify.settimeout(PATIENCE)
            p.send_signal(signal.SIGTERM)
            try:
                msg = notify.recv(4096).decode()
                if msg != "STOPPING=1":
                    failures.append(f"at SIGTERM: {msg!r}")
            except socket.timeout:
                failures.append("no STOPPING=1")
            p.wait(timeout=PATIENCE)
            reader.join(PATIENCE)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            remove_runtime_dir(prefix)
            notify.close()
        if p.returncode != 0:
            failures.append(f"exit {p.returncode} after SIGTERM")
    if failures:
        print("\n".join(failures))
        print("stderr:", "".join(err_lines)[-3000:])
        raise SystemExit(1)
    print("READY=1, WATCHDOG=1 while every worker loops, none once one stalls, STOPPING=1")


if __name__ == "__main__":
    main()
