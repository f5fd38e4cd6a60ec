#!/usr/bin/env python3
"""The DPDK data plane in controlled mode: policy and table from a real
consentd over the data-plane socket (docs/protocol.md).

Consent is granted through consentd's API; then `optgate --control` and
`optgate-replay --control` replay the same capture against the same consentd.
They must agree byte for byte and counter for counter, and the counters must
show that consentd's grants (not a local file) decided: identifiers both
passed and stripped. What each subscriber was shown to have shared
(GET /v1/subscribers/{id}/disclosures, docs/transparency.md) after the DPDK
run is exactly what optgate-replay's --report counts for that subscriber's
keys; after the replay's own reports, exactly twice that. Then a revocation
with ?wait=enforced reaches a second data-plane run: nothing passes any more.

usage: controlled.py OPTGATE OPTGATE_REPLAY CAPTURE
Environment: CONSENTD, OPTGATECTL, CONSENTD_TEST_POLICY (the example policy).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "consentd"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import PATIENCE, Daemon  # noqa: E402
from agreement import read_pcap, remove_runtime_dir, write_empty_pcap  # noqa: E402


def run_dataplane(optgate, capture, socket, tmp, tag):
    out = os.path.join(tmp, f"{tag}.to_internet.pcap")
    stats = os.path.join(tmp, f"{tag}.stats.json")
    cmd = [optgate, "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-shconf",
           "--file-prefix", f"optgate-controlled-{os.getpid()}-{tag}", "--log-level", "warning",
           f"--vdev=net_pcap0,rx_pcap={capture},tx_pcap={os.path.join(tmp, tag + '.to_subscribers.pcap')}",
           f"--vdev=net_pcap1,rx_pcap={write_empty_pcap(tmp)},tx_pcap={out}",
           "--", "--control", socket, "--name", f"dpdk-{tag}", "--sync-timeout-ms", str(PATIENCE * 1000),
           "--idle-exit-ms", "500", "--stats", stats]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    remove_runtime_dir(f"optgate-controlled-{os.getpid()}-{tag}")
    if r.returncode != 0:
        raise SystemExit(f"optgate exited {r.returncode}:\n{r.stdout}{r.stderr}")
    with open(stats) as f:
        return read_pcap(out), json.load(f)


def run_replay(replay, capture, socket, tmp, tag):
    out = os.path.join(tmp, f"{tag}.replay.pcap")
    report = os.path.join(tmp, f"{tag}.report.json")
    r = subprocess.run([replay, "--quiet", "--control", socket, "--name", f"replay-{tag}", "--report", report,
                        capture, out], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"optgate-replay exited {r.returncode}:\n{r.stdout}{r.stderr}")
    with open(report) as f:
        return read_pcap(out), json.load(f)


# consentd attributes disclosure counts through the binding history, with
# an interval widened by this margin (docs/transparency.md): small, so that
# it acknowledges the data plane's last report soon after the run.
CLOCK_MARGIN_S = 0.2


def disclosures_by_subscriber(report, bindings):
    """The replay report's "disclosures" for each bound subscriber:
    {sub: {(destination, identifier): [passed, stripped]}}; unbound keys are
    nobody's."""
    out = {sub: {} for sub in bindings.values()}
    for row in report["disclosures"]:
        sub = bindings.get(row["key"])
        if sub is None:
            continue
        c = out[sub].setdefault((row["destination"], row["identifier"]), [0, 0])
        c[0] += row["passed"]
        c[1] += row["stripped"]
    return out


def api_disclosures(d, sub):
    """GET /v1/subscribers/{sub}/disclosures summed over its days, in the
    shape disclosures_by_subscriber gives."""
    status, _, body = d.request("GET", f"/v1/subscribers/{sub}/disclosures", token="auditor")
    if status != 200:
        raise SystemExit(f"disclosures of {sub}: {status} {body}")
    out = {}
    for day in body["days"]:
        for col in day["collectors"]:
            for ident in col["identifiers"]:
                c = out.setdefault((col["name"], ident["name"]), [0, 0])
                c[0] += ident["passed"]
                c[1] += ident["stripped"]
    return out


def check(cond, message, failures):
    if not cond:
        failures.append(message)


def main():
    optgate, replay, capture = sys.argv[1:4]
    d = Daemon(limits=f"disclosures: {{clock_margin: {int(CLOCK_MARGIN_S * 1000)}ms}}\n")
    failures = []
    try:
        socket = os.path.join(d.dir, "dp.sock")
        # The same subscribers as config/consent.example.yaml's IPv4 ones.
        bindings = {"100.64.0.10": "sub-1001", "100.64.0.11": "sub-1002", "100.64.1.20": "sub-1003",
                    "100.64.0.12": "sub-1005"}
        for address, sub in bindings.items():
            status, _, body = d.request("PUT", f"/v1/bindings/{address}", {"subscriber": sub, "source": "radius"})
            check(status == 200, f"bind {address}: {status} {body}", failures)
        for sub, purpose in (("sub-1001", "advertising"), ("sub-1001", "analytics"), ("sub-1002", "analytics"),
                             ("sub-1003", "advertising")):
            status, _, body = d.request("PUT", f"/v1/subscribers/{sub}/consents/{purpose}",
                                        {"source": "portal", "notice_version": "2026-01"})
            check(status == 200, f"grant {sub} {purpose}: {status} {body}", failures)

        # A data plane's first interval must begin after the bindings plus
        # the margin, or its counts are ambiguous: let that time pass.
        time.sleep(5 * CLOCK_MARGIN_S)

        with tempfile.TemporaryDirectory(prefix="optgate-controlled-") as tmp:
            dp_frames, dp_stats = run_dataplane(optgate, capture, socket, tmp, "granted")
            # optgate flushed its last disclosure report, acknowledged once
            # stored, before it exited: the API has all of it now.
            after_dpdk = {sub: api_disclosures(d, sub) for sub in set(bindings.values())}
            rp_frames, rp_report = run_replay(replay, capture, socket, tmp, "granted")
            want = disclosures_by_subscriber(rp_report, bindings)
            check(rp_report["disclosures_overflowed"] == 0, "the replay's disclosure table overflowed", failures)
            check(any(want.values()), "the capture has no identifiers from bound subscribers", failures)
            for sub in sorted(want):
                check(after_dpdk[sub] == want[sub],
                      f"disclosures of {sub} after optgate --control: {after_dpdk[sub]}, "
                      f"optgate-replay --report counts {want[sub]}", failures)
                twice = {k: [2 * v[0], 2 * v[1]] for k, v in want[sub].items()}
                got = api_disclosures(d, sub)
                check(got == twice, f"disclosures of {sub} after both runs: {got}, want twice {want[sub]}", failures)
            check(dp_frames == rp_frames, "optgate --control and optgate-replay --control forward different frames",
                  failures)
            for key in ("packets", "destinations", "identifiers"):
                check(dp_stats[key] == rp_report[key], f"'{key}' differs: {dp_stats[key]} vs {rp_report[key]}",
                      failures)
            passed = dp_stats["counters"]["verdict_pass_consent"]
            check(passed > 0, "nothing passed: consentd's grants did not reach the data plane", failures)
            check(dp_stats["counters"]["verdict_strip_no_consent"] > 0, "nothing stripped for lack of consent",
                  failures)
            check(dp_stats["counters"]["verdict_strip_table_not_received"] == 0, "ran before the snapshot", failures)
            # Its final counters reached consentd over the control channel
            # (flushed before it disconnected) and /metrics shows them.
            frames = len(read_pcap(capture))
            for metric, want in ((f'optgate_dp_driver_rx{{dataplane="dpdk-granted"}}', frames),
                                 (f'optgate_dp_verdict_pass_consent{{dataplane="dpdk-granted"}}', passed),
                                 (f'optgate_dp_worker_packets{{dataplane="dpdk-granted",worker="0"}}', frames),
                                 (f'optgate_dp_port_rx_packets{{dataplane="dpdk-granted",port="subscriber"}}',
                                  frames)):
                got = d.metric(metric)
                check(got == want, f"consentd /metrics {metric} = {got}, want {want}", failures)

            # Withdraw every grant, waiting until connected data planes enforce
            # it, then run again: no consent is left, so nothing passes.
            for sub, purpose in (("sub-1001", "advertising"), ("sub-1001", "analytics"),
                                 ("sub-1002", "analytics"), ("sub-1003", "advertising")):
                status, _, body = d.request("DELETE", f"/v1/subscribers/{sub}/consents/{purpose}?wait=enforced",
                                            {"source": "portal"})
                check(status == 200, f"revoke {sub} {purpose}: {status} {body}", failures)
            _, after = run_dataplane(optgate, capture, socket, tmp, "revoked")
            check(after["counters"]["verdict_pass_consent"] == 0,
                  f"{after['counters']['verdict_pass_consent']} passed after every consent was revoked", failures)
            check(after["counters"]["verdict_strip_no_consent"] > dp_stats["counters"]["verdict_strip_no_consent"],
                  "revocations did not turn passes into strips", failures)
    finally:
        log = d.read_log()
        d.cleanup()
    if failures:
        print("\n".join(failures))
        print("consentd log:\n" + log)
        raise SystemExit(1)
    print(f"controlled mode: optgate and optgate-replay agree; {passed} identifier decisions passed, "
          f"none after revocation")


if __name__ == "__main__":
    main()
