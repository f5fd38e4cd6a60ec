#!/usr/bin/env python3
"""No packet lost across 100 consent changes and 5 policy reloads during a
steady replayed stream (issue 7; docs/dataplane.md).

consentd (fresh ledger, the example policy) and `optgate --control` on
virtual devices: net_pcap replays CAPTURE forever (infinite_rx=1) into the
subscriber port, net_null (no-rx=1) takes everything out of the internet
port. For about 18 s a driver makes 100 consent changes (grant/revoke,
each with ?wait=enforced) and 5 policy reloads (the policy file rewritten
with a harmless change, then POST /v1/policy/reload): DSCP tagging switched
on and off, and a purpose appended and removed, which makes consentd resend
the whole table (a snapshot installed under traffic).

Asserted, from optgate's --stats and consentd:
- every frame received was forwarded or dropped by the pipeline for a
  reason its counters name (rx == tx + dropped == tx + the drop reasons);
  none lost on a full tx queue, as an unlinearisable chain or on a
  steering ring; and no frame met a missing or stale table;
- every change was acknowledged by this data plane, and consentd lists it
  at the ledger's last sequence number at the end;
- identifiers both passed and were stripped, and the reloads reached the
  data plane (frames were DSCP-tagged; consentd sent table snapshots).

usage: noloss.py OPTGATE CAPTURE
Environment: CONSENTD, OPTGATECTL, CONSENTD_TEST_POLICY (config/policy.example.yaml).
"""
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "consentd"))
from daemon import PATIENCE, Daemon  # noqa: E402

CHANGES, RELOADS, SECONDS = 100, 5, 18.0
NAME = "noloss"
# Pipeline counters that drop a frame; `dropped` is their sum.
DROP_REASONS = ("no_policy_dropped", "fragment_dropped", "http_flow_table_full", "http_retransmit_dropped",
                "http_out_of_order_dropped")

EXTRA_PURPOSE = """  noloss-research:
    description: >-
      A purpose added by the no-loss test: appending one changes the table's
      meaning, so consentd resends the whole table to data planes.
    benefit: The test learns that no packet is lost.
    data: [device identifier]
    retention: "30 days"
"""
TAGGING = "\ntagging:\n  passed: af11\n  stripped: cs1\n  exempt: af21\n"


def policy_variant(base, tagging, extra_purpose):
    text = base
    if extra_purpose:
        marker = "\n# ---------------------------------------------------------------------------\n# Identifiers"
        if marker not in text:
            raise SystemExit("the example policy changed: no Identifiers section after the purposes")
        text = text.replace(marker, "\n" + EXTRA_PURPOSE + marker, 1)
    return text + (TAGGING if tagging else "")


# (tagging, extra purpose) for reload 1..5: policy-only changes and two
# table resyncs (a purpose appended, then removed).
RELOAD_PLAN = [(True, False), (True, True), (False, True), (False, False), (True, False)]
# Bound subscribers of the sample capture (config/consent.example.yaml's IPv4 ones).
BINDINGS = (("100.64.0.10", "sub-1001"), ("100.64.0.11", "sub-1002"), ("100.64.1.20", "sub-1003"),
            ("100.64.0.12", "sub-1005"))
# Never changed: sub-1001 keeps analytics (passes all along), sub-1005 has no
# consent (stripped all along). These four pairs flip.
STEADY_GRANTS = (("sub-1001", "analytics"),)
TOGGLED = (("sub-1001", "advertising"), ("sub-1002", "analytics"), ("sub-1003", "advertising"),
           ("sub-1002", "advertising"))


def wait_for_line(stream, needle, timeout, seen):
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline, buf = time.monotonic() + timeout, b""
    while True:
        if needle.encode() in buf:
            seen.append(buf)
            return
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            raise SystemExit(f"optgate: no '{needle}' within {timeout} s:\n{buf.decode(errors='replace')}")
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            raise SystemExit(f"optgate exited before '{needle}':\n{buf.decode(errors='replace')}")
        buf += chunk


def main():
    optgate, capture = sys.argv[1:3]
    failures = []

    def check(cond, message):
        if not cond:
            failures.append(message)

    d = Daemon()
    p = None
    try:
        with open(d.policy) as f:
            base_policy = f.read()
        for address, sub in BINDINGS:
            status, _, body = d.request("PUT", f"/v1/bindings/{address}", {"subscriber": sub, "source": "radius"})
            check(status == 200, f"bind {address}: {status} {body}")
        grant = {"source": "portal", "notice_version": "2026-01"}
        for sub, purpose in STEADY_GRANTS:
            status, _, body = d.request("PUT", f"/v1/subscribers/{sub}/consents/{purpose}", grant)
            check(status == 200, f"grant {sub} {purpose}: {status} {body}")

        with tempfile.TemporaryDirectory(prefix="optgate-noloss-") as tmp:
            stats = os.path.join(tmp, "stats.json")
            # Lcore 1 forwards; lcore 0 (main) keeps the control thread off
            # the busy-polling worker's CPU.
            prefix = f"optgate-noloss-{os.getpid()}"
            cmd = [optgate, "-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", prefix,
                   f"--vdev=net_pcap0,rx_pcap={capture},infinite_rx=1", "--vdev=net_null0,no-rx=1",
                   "--", "--control", os.path.join(d.dir, "dp.sock"), "--name", NAME, "--worker-lcores", "1",
                   "--sync-timeout-ms", str(PATIENCE * 1000), "--stats", stats]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            seen = []
            wait_for_line(p.stderr, "forwarding between", PATIENCE, seen)
            start = time.monotonic()

            conn = d.connect()
            state = {pair: False for pair in TOGGLED}
            acknowledged = reloads = 0
            for i in range(CHANGES):
                # Spread evenly over SECONDS; a reload before changes 10, 30, 50, 70, 90.
                time.sleep(max(0.0, start + SECONDS * i / CHANGES - time.monotonic()))
                if i % 20 == 10:
                    tagging, extra = RELOAD_PLAN[reloads]
                    with open(d.policy, "w") as f:
                        f.write(policy_variant(base_policy, tagging, extra))
                    status, _, body = d.request("POST", "/v1/policy/reload", token="ops", conn=conn)
                    check(status == 200 and body.get("reloaded") is True, f"reload {reloads + 1}: {status} {body}")
                    check(body.get("table_resync", False) == (reloads in (1, 3)),
                          f"reload {reloads + 1}: table_resync {body.get('table_resync')}")
                    reloads += 1
                sub, purpose = TOGGLED[i % len(TOGGLED)]
                method = "DELETE" if state[(sub, purpose)] else "PUT"
                status, _, body = d.request(method, f"/v1/subscribers/{sub}/consents/{purpose}?wait=enforced&timeout={PATIENCE}s",
                                            grant, conn=conn)
                state[(sub, purpose)] = not state[(sub, purpose)]
                if status != 200:
                    check(False, f"change {i + 1} ({method} {sub} {purpose}): {status} {body}")
                    continue
                e = body["enforcement"]
                ours = [x for x in e["dataplanes"] if x["name"] == NAME]
                if e["status"] == "enforced" and ours and ours[0]["acknowledged"]:
                    acknowledged += 1
                else:
                    check(False, f"change {i + 1} (seq {body['seq']}) not enforced: {e}")
            time.sleep(max(0.0, start + SECONDS - time.monotonic()))

            status, _, planes = d.request("GET", "/v1/dataplanes", token="auditor", conn=conn)
            conn.close()
            check(status == 200, f"GET /v1/dataplanes: {status} {planes}")
            ours = [x for x in planes.get("dataplanes", []) if x["name"] == NAME]
            check(len(ours) == 1, f"consentd does not list '{NAME}': {planes}")
            if ours:
                check(ours[0]["applied_seq"] == planes["head_seq"] and ours[0]["synced"],
                      f"data plane at seq {ours[0]['applied_seq']}, ledger at {planes['head_seq']}: {ours[0]}")
            snapshots = d.metric("consentd_dataplane_snapshots_sent_total")

            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=60)
            log = b"".join(seen).decode(errors="replace") + err.decode(errors="replace")
            if p.returncode != 0:
                raise SystemExit(f"optgate exited {p.returncode}:\n{log}{out.decode(errors='replace')}")
            with open(stats) as f:
                s = json.load(f)
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        consentd_log = d.read_log()
        d.cleanup()
        # EAL's runtime directory (the telemetry socket), even with --no-shconf.
        shutil.rmtree(os.path.join("/var/run/dpdk", f"optgate-noloss-{os.getpid()}"), ignore_errors=True)

    dr, c, pk = s["driver"], s["counters"], s["packets"]
    explained = sum(c[k] for k in DROP_REASONS)
    check(dr["rx"] > 1_000_000, f"only {dr['rx']} frames received: not a steady stream")
    check(pk["in"] == dr["rx"], f"driver received {dr['rx']}, the pipeline saw {pk['in']}")
    check(dr["rx"] == dr["tx"] + pk["dropped"], f"rx {dr['rx']} != tx {dr['tx']} + pipeline drops {pk['dropped']}")
    check(pk["dropped"] == explained,
          f"{pk['dropped']} pipeline drops, {explained} explained by {', '.join(DROP_REASONS)}")
    for k in ("tx_full_dropped", "multi_segment_dropped", "steering_ring_full_dropped", "emit_dropped"):
        check(dr.get(k, 0) == 0, f"{dr.get(k)} frames {k}")
    for k in ("no_policy_dropped", "verdict_strip_table_not_received", "verdict_strip_table_stale"):
        check(c[k] == 0, f"{c[k]} frames counted {k}: the table went missing or stale under updates")
    check(acknowledged == CHANGES, f"{acknowledged} of {CHANGES} changes acknowledged by the data plane")
    check(reloads == RELOADS, f"{reloads} of {RELOADS} reloads made")
    check(c["verdict_pass_consent"] > 0, "no identifier passed")
    check(c["verdict_strip_no_consent"] > 0, "no identifier stripped for want of consent")
    check(c["tagged_passed"] + c["tagged_stripped"] > 0, "no frame DSCP-tagged: the reloaded policies never applied")
    check(snapshots is not None and snapshots >= 3, f"{snapshots} table snapshots sent: the resyncs did not happen")
    if failures:
        print("\n".join(failures))
        print("optgate log:\n" + log)
        print("consentd log:\n" + consentd_log)
        raise SystemExit(1)
    print(f"no loss: {dr['rx']} frames received, {dr['tx']} sent, {pk['dropped']} dropped by the pipeline "
          f"({', '.join(f'{k} {c[k]}' for k in DROP_REASONS if c[k]) or 'none'}); {CHANGES} changes acknowledged, "
          f"{RELOADS} reloads ({snapshots:.0f} snapshots); passed {c['verdict_pass_consent']}, "
          f"stripped (no consent) {c['verdict_strip_no_consent']}, tagged {c['tagged_passed'] + c['tagged_stripped']}")


if __name__ == "__main__":
    main()
