#!/usr/bin/env python3
"""How long a change takes to reach a data plane of a follower (issue 19,
docs/scale-out.md "Followers"), against a data plane of the writer itself
in the same run.

A writer A and a follower B on one PostgreSQL (started here, fsync on), a
data plane (optgate-replay --control) on each. N grants one after another
at A; for each, from A's 200 until each data plane's applied_seq (GET
/v1/dataplanes of its consentd, polled) reaches the grant's sequence. The
poll itself costs about a request, so both columns carry it alike.

With --wait: the grants ask ?wait=enforced, and the answer's own report
gives, per data plane, the time from the durable write to its
acknowledgement as the writer learned it: its own data plane's directly,
the follower's through the follower's PeerLink NOTIFY (docs/scale-out.md,
"?wait=enforced across instances"). Both from the same answers.

usage: bench/follower_latency.py [--grants N] [--wait]
Environment: CONSENTD, OPTGATECTL, OPTGATE_REPLAY, CONSENTD_TEST_POLICY
(defaults: ./build).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = os.path.join(root, "build")
os.environ.setdefault("CONSENTD", os.path.join(build, "src/consentd/consentd"))
os.environ.setdefault("OPTGATECTL", os.path.join(build, "src/ctl/optgatectl"))
os.environ.setdefault("OPTGATE_REPLAY", os.path.join(build, "src/replay/optgate-replay"))
os.environ.setdefault("CONSENTD_TEST_POLICY", os.path.join(root, "tests/consentd/policy.yaml"))
sys.path.insert(0, os.path.join(root, "tests/consentd"))
from daemon import Daemon, eventually  # noqa: E402
from pg_follower_test import applied, dataplane, paced_capture  # noqa: E402
from pg_server import PgServer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grants", type=int, default=300)
    ap.add_argument("--wait", action="store_true", help="measure ?wait=enforced's per-data-plane report")
    args = ap.parse_args()
    pg = PgServer()
    tmp = tempfile.mkdtemp(prefix="optgate-follower-bench-")
    capture = os.path.join(tmp, "paced.pcap")
    paced_capture(capture, 3600)
    a = Daemon(pg=pg)
    b = Daemon(pg=pg, pg_database=a.pg_name, follow=True)
    replays = []
    try:
        for d, name in ((a, "edge-a"), (b, "edge-b")):
            replays.append(subprocess.Popen(
                [os.environ["OPTGATE_REPLAY"], "--control", os.path.join(d.dir, "dp.sock"), "--name", name,
                 "--pace", capture, os.path.join(tmp, name + ".pcap")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            assert eventually(lambda: dataplane(d, name) is not None)
        writer_ms, follower_ms = [], []
        conns = {d: d.connect() for d in (a, b)}
        if args.wait:
            # The writer must know the follower's data plane before waiting for it.
            assert eventually(lambda: a.metric("consentd_peer_dataplanes") == 1)
            answers = []
            for i in range(args.grants):
                st, _, j = a.request("PUT", f"/v1/subscribers/bench-{i}/consents/advertising?wait=enforced&timeout=5s",
                                     {"source": "portal", "notice_version": "v1"}, conn=conns[a])
                assert st == 200 and j["enforcement"]["status"] == "enforced", j
                rows = {r["name"]: r for r in j["enforcement"]["dataplanes"]}
                writer_ms.append(rows["edge-a"]["latency_ms"])
                follower_ms.append(rows["edge-b"]["latency_ms"])
                answers.append(j["enforcement"]["latency_ms"])

            def pct(xs):
                xs = sorted(xs)
                return f"{statistics.median(xs):.2f} / {xs[int(len(xs) * 0.99) - 1]:.2f} / {xs[-1]:.2f}"

            print(f"{args.grants} grants at the writer with ?wait=enforced, one at a time; "
                  "ms from the durable write to each acknowledgement, as the answer reports it (p50 / p99 / max)")
            print(f"| the writer's data plane (baseline) | {pct(writer_ms)} |")
            print(f"| the follower's data plane | {pct(follower_ms)} |")
            print(f"| the whole wait | {pct(answers)} |")
            print(f"follower p50 / writer p50: {statistics.median(follower_ms) / statistics.median(writer_ms):.2f}")
            return

        def reached(d, name, seq):
            st, _, body = d.request("GET", "/v1/dataplanes", token="auditor", conn=conns[d])
            return any(x["name"] == name and x["applied_seq"] >= seq for x in body["dataplanes"])

        for i in range(args.grants):
            st, _, j = a.request("PUT", f"/v1/subscribers/bench-{i}/consents/advertising",
                                 {"source": "portal", "notice_version": "v1"})
            assert st == 200, j
            t0 = time.monotonic()
            seq = j["seq"] if "seq" in j else j["last_seq"]
            pending = {(a, "edge-a"): writer_ms, (b, "edge-b"): follower_ms}
            while pending:
                for (d, name), out in list(pending.items()):
                    if reached(d, name, seq):
                        out.append((time.monotonic() - t0) * 1000)
                        del pending[(d, name)]
                if time.monotonic() - t0 > 60:
                    raise SystemExit(f"grant {i} (seq {seq}) not applied within 60 s: {list(pending)}")

        def row(what, xs):
            xs = sorted(xs)
            return (f"| {what} | {statistics.median(xs):.2f} | {xs[int(len(xs) * 0.99) - 1]:.2f} | "
                    f"{xs[-1]:.2f} |")

        print(f"{args.grants} grants at the writer, one at a time; ms from its 200 to the data plane's applied_seq")
        print("| data plane on | p50 ms | p99 ms | max ms |")
        print("|---|--:|--:|--:|")
        print(row("the writer (baseline)", writer_ms))
        print(row("a follower", follower_ms))
        print(f"follower p50 / writer p50: {statistics.median(follower_ms) / statistics.median(writer_ms):.2f}")
        print(f"B's data plane at {applied(b, 'edge-b')}, A's head {a.metric('consentd_ledger_head_seq')}")
    finally:
        for r in replays:
            r.kill()
            r.wait()
        b.cleanup()
        a.cleanup()
        pg.cleanup()


if __name__ == "__main__":
    main()
