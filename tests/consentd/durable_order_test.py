#!/usr/bin/python3
"""An answer leaves consentd only after its events are fsync'd
(docs/consentd.md, "Durability and group commit").

consentd runs under strace, which records every write to and fsync of the
ledger's WAL file and every Accounting-Response sent. RADIUS requests go one
at a time (each waits for its answer), so nothing of a later request is in
the WAL when an answer leaves: every answer must then follow an fsync of the
WAL file (through any descriptor of it) that began after the last WAL write
before the answer, and returned before the answer. A kill -9 cannot show
this (the page cache survives the process); the order of the system calls
does, whatever thread or descriptor makes the fsync.

Environment: as daemon.py, plus STRACE (default /usr/bin/strace).
"""
import os
import re
import signal
import stat
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

STRACE = os.environ.get("STRACE", "/usr/bin/strace")
REQUESTS = 150

# consentd under strace: daemon.py starts whatever CONSENTD names.
work = tempfile.mkdtemp(prefix="consentd-order-")
trace = os.path.join(work, "consentd.strace")
wrapper = os.path.join(work, "consentd-traced")
with open(wrapper, "w") as f:
    # LeakSanitizer cannot run in a traced process (the sanitizer build).
    f.write("#!/bin/sh\n"
            "export ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\"\n"
            f"exec {STRACE} -f -qq -e signal=none -e trace=openat,close,pwrite64,write,fsync,fdatasync,sendto,sendmsg "
            f"-o {trace} {os.environ['CONSENTD']} \"$@\"\n")
os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)
os.environ["CONSENTD"] = wrapper

from daemon import Daemon  # noqa: E402
from radius_test import (RADIUS_CONFIG, SECRET, Raw, acct_request, attr, ipv4, radius_port,  # noqa: E402
                         response_ok, u32)


def order_problems(lines):
    """(answers checked, [problems]) for the invariant above."""
    fds = {}        # fd -> path (threads share the table)
    pending = {}    # tid -> (call, fd, line index) of an unfinished call
    last_wal_write = -1
    wal_syncs = []  # (started, returned) line indexes
    answers, problems = 0, []

    def finished(call, fd, start, i, result, opened=""):
        nonlocal last_wal_write, answers
        path = fds.get(fd, "")
        if call == "openat":
            if result >= 0:
                fds[result] = opened
        elif call == "close":
            fds.pop(fd, None)
        elif call in ("pwrite64", "write") and path.endswith("-wal"):
            last_wal_write = i
        elif call in ("fsync", "fdatasync") and path.endswith("-wal") and result == 0:
            wal_syncs.append((start, i))
        elif call == "sendto" and answer_at.get(start):
            answers += 1
            if last_wal_write >= 0 and not any(s > last_wal_write and e < start for s, e in wal_syncs):
                problems.append(f"answer at trace line {start + 1} without an fsync of the WAL after its write "
                                f"(line {last_wal_write + 1})")

    answer_at = {}
    for i, line in enumerate(lines):
        m = re.match(r"(\d+)\s+(.*)$", line)
        if not m:
            continue
        tid, rest = m.groups()
        resumed = re.match(r"<\.\.\. (\w+) resumed>.*= (-?\d+)", rest)
        if resumed:
            if tid in pending:
                call, fd, start, opened = pending.pop(tid)
                finished(call, fd, start, i, int(resumed.group(2)), opened)
            continue
        c = re.match(r"(\w+)\((?:AT_FDCWD, \"([^\"]*)\"|(\d+))", rest)
        if not c:
            continue
        call, opened = c.group(1), c.group(2) or ""
        fd = int(c.group(3)) if c.group(3) else -1
        # An Accounting-Response: code 5 (the answer's first byte).
        if call == "sendto" and re.match(r'sendto\(\d+, "\\(5|005)', rest):
            answer_at[i] = True
        if "<unfinished ...>" in rest:
            pending[tid] = (call, fd, i, opened)
            continue
        r = re.search(r"= (-?\d+)", rest)
        finished(call, fd, i, i, int(r.group(1)) if r else -1, opened)
    return answers, problems


def main():
    failures = []
    d = Daemon(limits=RADIUS_CONFIG)
    try:
        raw = Raw(radius_port(d))
        try:
            for n in range(REQUESTS):
                req = acct_request(u32(40, 1) + attr(1, f"order-{n % 7}") + attr(44, f"s-order-{n}") +
                                   ipv4(8, f"100.64.{20 + n // 200}.{n % 200 + 1}"), SECRET, ident=n % 256)
                if not response_ok(raw.exchange(req), req, SECRET):
                    failures.append(f"request {n}: no valid Accounting-Response")
        finally:
            raw.close()
        # SIGTERM to consentd itself: strace, which daemon.py started, ends
        # with it (strace does not pass its own SIGTERM on).
        with open(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children") as f:
            for pid in f.read().split():
                os.kill(int(pid), signal.SIGTERM)
    finally:
        d.cleanup()
    with open(trace) as f:
        answers, problems = order_problems(f.read().splitlines())
    if answers < REQUESTS:
        failures.append(f"{answers} Accounting-Responses in the trace, {REQUESTS} expected")
    failures += problems[:10]
    for p in failures:
        print("FAIL:", p, flush=True)
    if not failures:
        print(f"durable-order: {answers} answers, each after an fsync of the WAL that followed its write")
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)
        return 0
    print(f"{len(failures)} failures; the trace is in {trace}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
