#!/usr/bin/python3
"""The largest history page (docs/benchmarks.md, "The largest history
page"): a subscriber with 100,000 events and 100,000 bindings (one import,
`long_history`), then `GET /v1/subscribers/{id}?history=100000` (31 MiB).

Timed: two consentd binaries alternately, ROUNDS rounds of a daemon each,
three pages per daemon; prints the time to each answer's first byte (the
page is read and built before it is sent) and the medians.

  CONSENTD=BASE OPTGATECTL=build/src/ctl/optgatectl \\
  CONSENTD_TEST_POLICY=tests/consentd/policy.yaml \\
  /usr/bin/python3 bench/history_page.py BASE NEW [ROUNDS]

Instructions: each binary once under `valgrind --tool=callgrind`, the
counters zeroed after the import and dumped after one page; prints the
instructions of that page (repeatable where wall clock is not).

  ... /usr/bin/python3 bench/history_page.py --callgrind BASE NEW
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "consentd"))
import daemon  # noqa: E402
from daemon import TOKENS, Daemon, history_request, long_history  # noqa: E402

EVENTS = 100_000
PAGES = 3
# Under valgrind everything is about 50 times slower: generous limits.
LIMITS = "limits: {write_timeout: 900s, header_timeout: 900s, body_timeout: 900s}\n"


def first_byte_seconds(d):
    """One page: seconds to its first byte; the rest is read and dropped."""
    s = socket.create_connection(("127.0.0.1", d.port))
    try:
        s.settimeout(900)
        t = time.monotonic()
        s.sendall(history_request("bench", EVENTS, TOKENS["auditor"][0]))
        head = s.recv(65536)
        seconds = time.monotonic() - t
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        length = int(re.search(rb"[Cc]ontent-[Ll]ength: (\d+)", head).group(1))
        got = len(head) - head.index(b"\r\n\r\n") - 4
        while got < length:
            chunk = s.recv(1 << 20)
            assert chunk, "closed before the end of the page"
            got += len(chunk)
        return seconds
    finally:
        s.close()


def timed(binaries, rounds):
    seen = {b: [] for b in binaries}
    for r in range(rounds):
        for b in binaries:
            daemon.CONSENTD = b
            d = Daemon(limits=LIMITS, env={"MALLOC_PERTURB_": "0"})
            try:
                long_history(d, "bench", EVENTS)
                times = [first_byte_seconds(d) for _ in range(PAGES)]
            finally:
                d.cleanup()
            seen[b] += times
            print(f"round {r + 1} {b}: " + " ".join(f"{t:.2f}" for t in times), flush=True)
    for b in binaries:
        print(f"median {statistics.median(seen[b]):.3f} s  {b}")
    base, new = (statistics.median(seen[b]) for b in binaries)
    print(f"new / base: {new / base:.2f}")


def instructions(binary):
    with tempfile.TemporaryDirectory() as tmp:
        wrapper = os.path.join(tmp, "consentd-callgrind")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file={tmp}/cg.%p {binary} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        daemon.CONSENTD = wrapper
        d = Daemon(limits=LIMITS, env={"MALLOC_PERTURB_": "0"})
        try:
            long_history(d, "bench", EVENTS)
            subprocess.run(["callgrind_control", "-z", str(d.proc.pid)], check=True, capture_output=True)
            first_byte_seconds(d)
            subprocess.run(["callgrind_control", "-d", "page", str(d.proc.pid)], check=True, capture_output=True)
            dump = os.path.join(tmp, f"cg.{d.proc.pid}.1")
            with open(dump) as f:
                return int(re.search(r"^summary: (\d+)$", f.read(), re.M).group(1))
        finally:
            d.cleanup()


def main():
    args = sys.argv[1:]
    if args and args[0] == "--callgrind":
        base, new = args[1], args[2]
        counts = {b: instructions(b) for b in (base, new)}
        for b in (base, new):
            print(f"{counts[b]:,} instructions per page  {b}")
        print(f"new / base: {counts[new] / counts[base]:.2f}")
        return
    timed([args[0], args[1]], int(args[2]) if len(args) > 2 else 3)


main()
