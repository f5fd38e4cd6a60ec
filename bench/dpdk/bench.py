#!/usr/bin/env python3
"""optgate (DPDK) against dpdk-testpmd --forward-mode=io, and the time from a
consent change to the data plane enforcing it. Run through bench/dpdk/run,
which installs testpmd and builds what this needs. A benchmark: it asserts
nothing (it stops only when a program fails). docs/benchmarks.md, "DPDK data
plane against testpmd".

Both programs run on the same virtual devices, one forwarding core (EAL
lcore 1; lcore 0 is the main lcore, idle in both), bursts of 32, 1024 rx and
tx descriptors, 256-mbuf caches, the same pool size and EAL memory:
  port 0  net_pcap, rx_pcap=MIX.pcap, infinite_rx=1 (the capture is loaded
          into mbufs once and replayed forever, each frame copied into a new
          mbuf per receive)
  port 1  net_null, no-rx=1 (a sink that frees what it is given)
optgate's port 0 faces subscribers and port 1 the internet. optgate runs in
controlled mode against a consentd holding 1M subscribers (imported with
`optgatectl import`), so its consent table has 1M entries.

Rates: rx frames from each program's exit statistics (testpmd's port 0
RX-packets; optgate's --stats driver.rx), divided by the time from the
program's "forwarding" line (testpmd: "Press enter to exit"; optgate:
"forwarding between") to the stop request (enter; SIGINT). Best of --runs
runs of --seconds each, testpmd and optgate alternating.
"""
import argparse
import json
import os
import selectors
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EAL_COMMON = ["--no-huge", "--no-pci", "--no-shconf", "-l", "0-1"]
# EAL's --log-level is global: "warning" would also hide optgate's own
# "forwarding between" line (info), which starts its clock.
TESTPMD_LOG = ["--log-level", "warning"]
BURST, RXD, TXD, CACHE = 32, 1024, 1024, 256
MIXES = {
    "nonhttp": "non-HTTP: TCP/443, QUIC, IPv6 TCP/443, both directions",
    "dns": "DNS queries with ECS to the collector resolver (stripped)",
    "http": "HTTP: SYN + request with X-UIDH/X-MSISDN to a collector (scrubbed)",
}


def pcap_frames(path):
    """Number of records in a classic pcap (either byte order)."""
    n = 0
    with open(path, "rb") as f:
        magic = struct.unpack("<I", f.read(24)[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            caplen = struct.unpack(endian + "IIII", h)[2]
            f.seek(caplen, 1)
            n += 1


def pool_and_memory(frames):
    """mbufs: the capture (held by net_pcap for the whole run) plus a working
    set larger than optgate's own computed need (rings, bursts, caches).
    EAL memory: 4 KiB per mbuf (a 2.3 KiB mbuf does not straddle a 4 KiB
    page without hugepages: testpmd fails at 768 MiB for 208k mbufs and
    runs at 896) plus 192 MiB for everything else, at least 512."""
    mbufs = frames + 8192
    mem = max(512, -(-(mbufs * 4096 // (1 << 20) + 192) // 256) * 256)
    return mbufs, mem


class Lines:
    """Reads a child's pipe line by line with a deadline."""

    def __init__(self, stream):
        self.stream, self.buf, self.text = stream, b"", []
        self.sel = selectors.DefaultSelector()
        self.sel.register(stream, selectors.EVENT_READ)

    def wait_for(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                self.text.append(line.decode(errors="replace"))
                if needle in self.text[-1]:
                    return time.monotonic()
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise RuntimeError(f"no '{needle}' within {timeout} s:\n" + "\n".join(self.text[-30:]))
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"exited before '{needle}':\n" + "\n".join(self.text[-30:]))
            self.buf += chunk

    def follow(self):
        """Keeps reading in the background (a child blocked on a full pipe
        would stall); rest() then returns everything."""
        self.thread = threading.Thread(target=self.rest, daemon=True)
        self.thread.start()

    def rest(self):
        while True:
            chunk = os.read(self.stream.fileno(), 65536)
            if not chunk:
                break
            self.buf += chunk
        self.text += self.buf.decode(errors="replace").splitlines()
        self.buf = b""
        return self.text


def vdevs(pcap):
    return [f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1", "--vdev=net_null0,no-rx=1"]


def remove_runtime_dir(prefix):
    """EAL leaves /var/run/dpdk/PREFIX (the telemetry socket) even with --no-shconf."""
    shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)


def run_testpmd(pcap, mbufs, mem, seconds, tag):
    cmd = ["stdbuf", "-oL", "dpdk-testpmd", *EAL_COMMON, *TESTPMD_LOG, "-m", str(mem), "--file-prefix", tag, *vdevs(pcap), "--",
           "--forward-mode=io", f"--burst={BURST}", f"--rxd={RXD}", f"--txd={TXD}", f"--mbcache={CACHE}",
           "--nb-cores=1", f"--total-num-mbufs={mbufs}"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = Lines(p.stdout)
        t0 = out.wait_for("Press enter to exit", 120)
        time.sleep(seconds)
        t1 = time.monotonic()
        p.stdin.write(b"\n")
        p.stdin.flush()
        text = out.rest()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        remove_runtime_dir(tag)
    rx = None
    for i, line in enumerate(text):
        if "Forward statistics for port 0" in line:
            rx = int(text[i + 1].split("RX-packets:")[1].split()[0])
            break
    if rx is None or p.returncode != 0:
        raise RuntimeError(f"testpmd exited {p.returncode} without port 0 statistics:\n" + "\n".join(text[-40:]))
    return {"rx": rx, "seconds": t1 - t0, "pps": rx / (t1 - t0)}


def optgate_cmd(args, pcap, mbufs, mem, socket, name, stats, workers="1"):
    return [args.optgate, *EAL_COMMON, "-m", str(mem), "--file-prefix", name, *vdevs(pcap), "--",
            "--control", socket, "--name", name, "--sync-timeout-ms", "120000", "--worker-lcores", workers,
            "--burst", str(BURST), "--mbufs", str(mbufs), "--stats", stats]


def start_optgate(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.prefix = cmd[cmd.index("--file-prefix") + 1]
    err = Lines(p.stderr)
    try:
        t0 = err.wait_for("forwarding between", 180)
    except BaseException:
        p.kill()
        p.wait()
        remove_runtime_dir(p.prefix)
        raise
    err.follow()
    p.out = Lines(p.stdout)
    p.out.follow()
    return p, err, t0


def stop_optgate(p, err, stats):
    p.send_signal(signal.SIGINT)
    t1 = time.monotonic()
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise RuntimeError("optgate did not stop within 60 s of SIGINT")
    finally:
        remove_runtime_dir(p.prefix)
    err.thread.join()
    p.out.thread.join()
    log, out = "\n".join(err.text), "\n".join(p.out.text)  # out: the summary, printed at exit
    if p.returncode != 0:
        raise RuntimeError(f"optgate exited {p.returncode}:\n{log}\n{out}")
    with open(stats) as f:
        return t1, json.load(f), log


def run_optgate(args, pcap, mbufs, mem, socket, seconds, tag, tmp):
    stats = os.path.join(tmp, tag + ".json")
    p, err, t0 = start_optgate(optgate_cmd(args, pcap, mbufs, mem, socket, tag, stats))
    time.sleep(seconds)
    t1, s, _ = stop_optgate(p, err, stats)
    rx = s["driver"]["rx"]
    c = s["counters"]
    return {"rx": rx, "seconds": t1 - t0, "pps": rx / (t1 - t0), "tx": s["driver"]["tx"],
            "dropped": s["packets"]["dropped"], "rewritten": s["packets"]["rewritten"],
            "verdicts": {k: v for k, v in c.items() if k.startswith("verdict_") and v},
            "http_flows": c["http_flows"], "http_flows_reused": c["http_flows_reused"],
            "http_rewritten": c["http_rewritten"], "dns_rewritten": c["dns_rewritten"]}


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def enforcement(args, d, pcap, mbufs, mem, socket, tmp, workers):
    """Sequential grants/revokes of one bound subscriber with ?wait=enforced
    while optgate forwards the mix; consentd's answer carries the time from
    the durable write (API acknowledgement) and from the commit to this data
    plane's acknowledgement, which it sends once every worker has passed a
    quiescent point after applying the change. Baseline: the same writes
    without ?wait, same connection."""
    name = f"enforce-{workers.replace(',', '-')}"
    stats = os.path.join(tmp, name + ".json")
    p, err, _ = start_optgate(optgate_cmd(args, pcap, mbufs, mem, socket, name, stats, workers))
    api, commit, client, base, timeouts = [], [], [], [], 0
    try:
        conn = d.connect()
        path = "/v1/subscribers/bench-0/consents/advertising"
        body = {"source": "bench", "notice_version": "2026-01"}
        for i in range(args.writes):
            t = time.monotonic()
            status, _, r = d.request("DELETE" if i % 2 else "PUT", path, body, conn=conn)
            if status != 200:
                raise RuntimeError(f"baseline write: {status} {r}")
            base.append(1000 * (time.monotonic() - t))
        for i in range(args.writes):
            t = time.monotonic()
            status, _, r = d.request("DELETE" if i % 2 else "PUT", path + "?wait=enforced&timeout=5s", body, conn=conn)
            client.append(1000 * (time.monotonic() - t))
            if status != 200:
                raise RuntimeError(f"write: {status} {r}")
            e = r["enforcement"]
            if e["status"] != "enforced" or not any(x["name"] == name for x in e["dataplanes"]):
                timeouts += 1
                continue
            api.append(e["latency_ms"])
            if "since_commit_ms" in e:
                commit.append(e["since_commit_ms"])
        conn.close()
    finally:
        _, s, _ = stop_optgate(p, err, stats)
    rows = {"baseline: durable write, no wait": base, "API acknowledgement -> data plane acknowledgement": api,
            "durable commit -> data plane acknowledgement": commit, "write with ?wait=enforced (client)": client}
    return {"workers": len(workers.split(",")), "writes": args.writes, "timeouts": timeouts,
            "forwarded_during": s["driver"]["rx"],
            "rows": {k: {"p50": pct(v, 0.5), "p90": pct(v, 0.9), "p99": pct(v, 0.99), "max": max(v)}
                     for k, v in rows.items() if v}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--mixes", default="nonhttp,dns,http")
    ap.add_argument("--flows", type=int, default=100000)
    ap.add_argument("--subscribers", type=int, default=1000000)
    ap.add_argument("--writes", type=int, default=500, help="consent changes per enforcement row (0: skip)")
    ap.add_argument("--work", help="directory for captures (default BUILD/bench-dpdk)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    b = os.path.abspath(args.build)
    args.optgate = os.path.join(b, "src/dataplane/optgate")
    mkmix = os.path.join(b, "bench/dpdk/optgate-bench-mkmix")
    os.environ.update(CONSENTD=os.path.join(b, "src/consentd/consentd"), OPTGATECTL=os.path.join(b, "src/ctl/optgatectl"),
                      CONSENTD_TEST_POLICY=os.path.join(ROOT, "config/policy.example.yaml"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "consentd"))
    from daemon import Daemon  # noqa: E402  (needs the environment above)

    work = args.work or os.path.join(b, "bench-dpdk")
    os.makedirs(work, exist_ok=True)
    mixes = args.mixes.split(",")
    pcaps = {}
    for m in mixes:
        pcaps[m] = os.path.join(work, f"{m}-{args.flows}.pcap")
        if not os.path.exists(pcaps[m]):
            subprocess.run([mkmix, "pcap", m, pcaps[m], "--flows", str(args.flows),
                            "--subscribers", str(args.subscribers)], check=True)
    ndjson = os.path.join(work, f"import-{args.subscribers}.ndjson")
    if not os.path.exists(ndjson):
        subprocess.run([mkmix, "import", ndjson, "--subscribers", str(args.subscribers)], check=True)

    results = {"machine": machine(), "runs": args.runs, "seconds": args.seconds, "mixes": {}, "enforcement": []}
    print("machine: {nproc} CPUs, {cpu}, load {load}, {time}".format(**results["machine"]), flush=True)
    # The ledger is kept under WORK and reused by later runs (an import of
    # 1M subscribers takes 20-50 s; a restart over it about 4 s).
    ledger_dir = os.path.join(work, f"consentd-{args.subscribers}")
    imported = os.path.exists(os.path.join(ledger_dir, "imported"))
    if not imported:
        shutil.rmtree(ledger_dir, ignore_errors=True)
    os.makedirs(ledger_dir, exist_ok=True)
    d = Daemon(workdir=ledger_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="optgate-bench-dpdk-") as tmp:
            socket = os.path.join(d.dir, "dp.sock")
            if not imported:
                t = time.monotonic()
                r = d.ctl("import", ndjson, token="ops")
                if r.returncode != 0:
                    raise RuntimeError("import failed: " + r.stdout + r.stderr)
                results["import_seconds"] = time.monotonic() - t
                open(os.path.join(ledger_dir, "imported"), "w").close()
                print(f"consentd: imported {args.subscribers} subscribers in {results['import_seconds']:.1f} s",
                      flush=True)
            entries = d.metric("consentd_table_entries")
            print(f"consentd: {entries:.0f} consent table entries", flush=True)
            if entries != args.subscribers:
                raise RuntimeError(f"consentd holds {entries} table entries, not {args.subscribers}")
            for m in mixes:
                frames = pcap_frames(pcaps[m])
                mbufs, mem = pool_and_memory(frames)
                print(f"\n{m}: {MIXES[m]}; {frames} frames, {mbufs} mbufs, EAL -m {mem}", flush=True)
                tp, og = [], []
                for i in range(args.runs):
                    tp.append(run_testpmd(pcaps[m], mbufs, mem, args.seconds, f"bench-testpmd-{os.getpid()}"))
                    print(f"  run {i + 1}: testpmd {tp[-1]['pps'] / 1e6:7.3f} Mpps", end="", flush=True)
                    og.append(run_optgate(args, pcaps[m], mbufs, mem, socket, args.seconds,
                                          f"bench-optgate-{m}-{i}", tmp))
                    print(f"   optgate {og[-1]['pps'] / 1e6:7.3f} Mpps   ratio {og[-1]['pps'] / tp[-1]['pps']:.3f}",
                          flush=True)
                best_t, best_o = max(x["pps"] for x in tp), max(x["pps"] for x in og)
                print(f"  best: testpmd {best_t / 1e6:.3f} Mpps, optgate {best_o / 1e6:.3f} Mpps, "
                      f"ratio {best_o / best_t:.3f} (median ratio "
                      f"{statistics.median(o['pps'] / t['pps'] for o, t in zip(og, tp)):.3f})")
                last = og[-1]
                print(f"  optgate's last run: verdicts {last['verdicts']}, rewritten {last['rewritten']}, "
                      f"dropped {last['dropped']}, http flows {last['http_flows']} new + "
                      f"{last['http_flows_reused']} restarted", flush=True)
                results["mixes"][m] = {"frames": frames, "mbufs": mbufs, "eal_memory_mb": mem, "testpmd": tp,
                                       "optgate": og, "best_testpmd_pps": best_t, "best_optgate_pps": best_o,
                                       "ratio": best_o / best_t}
            if args.writes:
                m = "http" if "http" in pcaps else mixes[0]
                frames = pcap_frames(pcaps[m])
                mbufs, mem = pool_and_memory(frames)
                for workers in ("1", "0,1"):
                    e = enforcement(args, d, pcaps[m], mbufs, mem, socket, tmp, workers)
                    e["mix"] = m
                    results["enforcement"].append(e)
                    label = ("1 worker (lcore 1; the control thread on the main lcore's CPU)" if workers == "1" else
                             "2 workers on lcores 0 and 1: the main lcore is a worker, its CPU shared with the "
                             "control thread (what docs/deploy.md advises against)")
                    e["label"] = label
                    print(f"\nenforcement, {label}, {m} mix forwarding "
                          f"({e['forwarded_during']} frames), {e['writes']} writes per row, "
                          f"{e['timeouts']} not enforced in time (ms):")
                    print(f"  {'':52} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
                    for k, v in e["rows"].items():
                        print(f"  {k:52} {v['p50']:8.3f} {v['p90']:8.3f} {v['p99']:8.3f} {v['max']:8.3f}")
    finally:
        d.cleanup()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "load": os.getloadavg(),
            "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


if __name__ == "__main__":
    main()
