#!/usr/bin/env python3
"""Live end to end: consentd + optgate on net_af_packet, real clients and
servers in network namespaces (docs/dataplane.md#live-test-in-namespaces).

    netns og-cli-PID                    root netns                      netns og-srv-PID
    cli0 100.64.10.2 ── veth ── ogc-PID ═ optgate ═ ogs-PID ── veth ── srv0 203.0.113.80
                                  port 0 (subscribers)  port 1 (internet)

optgate bridges the two root-side veth ends (a bump in the wire). The client
reaches 203.0.113.0/24 and the server 100.64.0.0/10 by on-link routes, so ARP
crosses optgate like any other frame. The server namespace runs an HTTP/1.1
server and a DNS responder that record what they receive; the client
namespace runs curl, dig and a keep-alive client that holds one connection
for the whole test. Consent changes go through optgatectl with --wait, and
every step asserts what the servers received:

  1. bound, no consent: X-UIDH arrives overwritten with the filler
  2. grant: it arrives intact (keep-alive client and curl)
  3. revoke: the very next request on the same connection is stripped
  4. grant, then the address moves to a subscriber without consent: stripped
  5. moved back: intact; consentd stopped: stripped once the table is stale;
     consentd restarted on the same ledger: intact again
  6. dig +subnet and dig +tcp +subnet: the ECS option arrives with consent,
     and as a Padding option of the same length with zeroed content without
  7. optgate was given two consentd endpoints (--control A,B); B starts,
     with its own ledger granting sub-a; A is SIGKILLed: optgate fails over
     to B at once (intact), and a revocation through B strips the next request.
     With LIVE_LEDGER=postgresql (dataplane-live-pg) every step runs with
     the ledger on a PostgreSQL of the test's own, and B is a standby on A's
     ledger (ledger.standby): A is SIGKILLed, B takes the writer's lock and
     serves, optgate fails over to it and keeps enforcing A's consents

and at exit optgate's counters must account for exactly those verdicts.

usage: live.py OPTGATE
Environment: CONSENTD, OPTGATECTL, CONSENTD_TEST_POLICY (as dataplane-controlled).
Needs root, ip, ethtool, curl and dig (scripts/setup installs them).
OPTGATE_LIVE_KEEP=1 keeps the logs, ledger and server records in /tmp/optgate-live-*.
"""
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "consentd"))
from daemon import PATIENCE, Daemon  # noqa: E402
from pg_server import PgServer  # noqa: E402

LEDGER = os.environ.get("LIVE_LEDGER", "sqlite")

PY = "/usr/bin/python3"
PID = os.getpid()
CLI_NS, SRV_NS = f"og-cli-{PID}", f"og-srv-{PID}"
CLI_VETH, SRV_VETH = f"ogc-{PID}", f"ogs-{PID}"  # root-namespace ends, optgate's ports
CLIENT, SERVER = "100.64.10.2", "203.0.113.80"
CLIENT_MAC, SERVER_MAC = "02:00:64:0a:00:02", "02:00:cb:00:71:50"
CLI_VETH_MAC, SRV_VETH_MAC = "02:00:00:00:0c:01", "02:00:00:00:0c:02"
STALENESS_S = 3  # consentd's default heartbeat (1 s) must be at most a third of it
FILLER = "x"
COLLECTOR = "live-adnet"
LIFETIME_S = 150  # every helper process dies by then whatever happens to this script

POLICY = f"""\
version: 1
purposes:
  advertising:
    description: Advertising partners receive an identifier for your device.
    benefit: Ads chosen for your interests, and 2 EUR off your monthly bill.
    data: [device identifier, client subnet]
    retention: "90 days"
identifiers:
  http_headers:
    - header: X-UIDH
      name: Verizon unique identifier header
  dns_options:
    - code: 8
      name: EDNS client subnet
collectors:
  - name: {COLLECTOR}
    purpose: advertising
    description: the live test's server (HTTP on 80, DNS on 53)
    match:
      prefixes: [{SERVER}/32]
subscribers:
  prefixes: [100.64.0.0/10]
http:
  ports: [80]
dns:
  ports: [53]
enforcement:
  staleness_limit: {STALENESS_S}s
  strip_filler: "{FILLER}"
"""


class Failure(Exception):
    pass


def run(cmd, timeout=PATIENCE, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def in_ns(ns, *cmd):
    return ["ip", "netns", "exec", ns, *cmd]


def wait_for(what, cond, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- topology ---------------------------------------------------------------

def disable_ipv6_root(dev):
    # No router solicitations, DAD or MLD reports through optgate.
    path = f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as f:
            f.write("1")


def topology_up():
    run(["ip", "netns", "add", CLI_NS])
    run(["ip", "netns", "add", SRV_NS])
    for ns, veth, veth_mac, inner, inner_mac in ((CLI_NS, CLI_VETH, CLI_VETH_MAC, "cli0", CLIENT_MAC),
                                                 (SRV_NS, SRV_VETH, SRV_VETH_MAC, "srv0", SERVER_MAC)):
        run(["ip", "link", "add", veth, "address", veth_mac, "type", "veth",
             "peer", "name", inner, "address", inner_mac, "netns", ns])
        disable_ipv6_root(veth)
        run(["ip", "link", "set", veth, "up"])
        run(in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"),
            check=False)
        # With checksum offload the sender leaves a partial checksum for the
        # "NIC" to finish; af_packet hands optgate the frame as it is, so the
        # receiver sees a bad TCP checksum (TcpInCsumErrors) and the handshake
        # never completes. Full checksums in software, and no GSO/TSO either
        # (a 64 KiB super-frame would not fit af_packet's 2 KiB frames).
        run(in_ns(ns, "ethtool", "-K", inner, "tx", "off", "tso", "off", "gso", "off"))
        run(in_ns(ns, "ip", "link", "set", "lo", "up"))
        run(in_ns(ns, "ip", "link", "set", inner, "up"))
    run(in_ns(CLI_NS, "ip", "addr", "add", f"{CLIENT}/24", "dev", "cli0"))
    run(in_ns(CLI_NS, "ip", "route", "add", "203.0.113.0/24", "dev", "cli0"))
    run(in_ns(SRV_NS, "ip", "addr", "add", f"{SERVER}/24", "dev", "srv0"))
    run(in_ns(SRV_NS, "ip", "route", "add", "100.64.0.0/10", "dev", "srv0"))


def topology_down():
    for ns in (CLI_NS, SRV_NS):
        run(["ip", "netns", "del", ns], check=False)
    for veth in (CLI_VETH, SRV_VETH):  # gone with their peers, unless a namespace lingers
        if os.path.exists(f"/sys/class/net/{veth}"):
            run(["ip", "link", "del", veth], check=False)


# -- processes --------------------------------------------------------------

class Procs:
    """Every helper process, so that `finally` can stop them all."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, log_path, **kw):
        log = open(log_path, "ab")
        p = subprocess.Popen(cmd, stdout=kw.pop("stdout", log), stderr=log, **kw)
        log.close()
        self.procs.append(p)
        return p

    def stop(self, p, timeout=PATIENCE):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # `timeout` passes it on to its child
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            if p.stdin:
                p.stdin.close()
            self.stop(p)


def start_server(procs, tmp, script, port, name):
    log, ready = os.path.join(tmp, f"{name}.jsonl"), os.path.join(tmp, f"{name}.ready")
    p = procs.start(in_ns(SRV_NS, "timeout", str(LIFETIME_S), PY, os.path.join(HERE, "live", script),
                          SERVER, str(port), log, ready), os.path.join(tmp, f"{name}.log"))
    wait_for(f"{name} to listen", lambda: os.path.exists(ready) or p.poll() is not None, PATIENCE)
    if p.poll() is not None:
        raise Failure(f"{name} exited {p.returncode}")
    return log


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class KeepAlive:
    """The keep-alive client in the client namespace: one connection, driven line by line."""

    def __init__(self, procs, tmp):
        self.p = procs.start(in_ns(CLI_NS, "timeout", str(LIFETIME_S), PY,
                                   os.path.join(HERE, "live", "keepalive_client.py"), SERVER, "80"),
                             os.path.join(tmp, "keepalive.log"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        hello = self.read()
        if not hello.get("connected"):
            raise Failure(f"keep-alive client: {hello}")
        self.local_port = hello["local_port"]

    def read(self, timeout=PATIENCE):
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if ready else b""
        if not line:
            raise Failure("keep-alive client gave no answer")
        return json.loads(line)

    def get(self, path, uidh):
        self.p.stdin.write((json.dumps({"path": path, "uidh": uidh}) + "\n").encode())
        self.p.stdin.flush()
        r = self.read()
        if "error" in r or r.get("status") != 200:
            raise Failure(f"keep-alive request {path}: {r}")
        if r["local_port"] != self.local_port:
            raise Failure(f"keep-alive request {path} left on port {r['local_port']}, not {self.local_port}")
        return r


# -- the test ---------------------------------------------------------------

class Live:
    def __init__(self, optgate, tmp):
        self.optgate, self.tmp = optgate, tmp
        self.procs = Procs()
        self.d = None
        self.d2 = None  # the second consentd (step 7)
        self.pg = None  # LIVE_LEDGER=postgresql: the server holding the ledger
        self.dp = None
        self.dp_log = os.path.join(tmp, "optgate.log")
        self.stats = os.path.join(tmp, "optgate.stats.json")
        self.name = f"live-{PID}"
        # What the servers must have seen, by verdict reason.
        self.expect = {"verdict_pass_consent": 0, "verdict_strip_no_consent": 0, "verdict_strip_table_stale": 0}
        self.http = {"stripped": 0, "passed": 0}
        self.dns = {"stripped": 0, "passed": 0}
        self.dns_rewritten = {"udp": 0, "tcp": 0}  # queries whose ECS was stripped, by transport
        self.requests = 0

    def say(self, text):
        print(f"[{time.monotonic() - self.t0:6.2f} s] {text}", flush=True)

    # consentd through optgatectl; --wait answers once optgate enforces the change.
    def ctl(self, *args, token="portal", d=None):
        r = (d or self.d).ctl(*args, token=token)
        if r.returncode != 0:
            raise Failure(f"optgatectl {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return json.loads(r.stdout)

    def enforced(self, *args, d=None):
        out = self.ctl(*args, "--wait=60s", d=d)
        status = out.get("enforcement", {}).get("status")
        if status != "enforced":
            raise Failure(f"optgatectl {' '.join(args)} --wait: {status}: {out}")
        planes = [p["name"] for p in out["enforcement"]["dataplanes"]]
        if self.name not in planes:
            raise Failure(f"optgatectl {' '.join(args)} --wait: {self.name} not among {planes}")
        return out

    def dataplane_synced(self, d=None):
        """True once optgate is connected, synced and has applied consentd's head."""
        r = (d or self.d).ctl("dataplanes", "--json", token="auditor")
        if r.returncode != 0:
            return False
        body = json.loads(r.stdout)
        return any(p["name"] == self.name and p["synced"] and p["lag"] == 0 and p["applied_seq"] == body["head_seq"]
                   for p in body["dataplanes"])

    def wait_synced(self, timeout, d=None):
        def ok():
            if self.dp.poll() is not None:
                raise Failure(f"optgate exited {self.dp.returncode}")
            return self.dataplane_synced(d)
        wait_for(f"{self.name} to sync with consentd", ok, timeout, interval=0.1)

    def start_optgate(self):
        # Two consentd instances, tried in turn: the second starts at step 7.
        sock = os.path.join(self.d.dir, "dp.sock") + "," + os.path.join(self.workdir2, "dp.sock")
        cmd = ["timeout", str(LIFETIME_S), self.optgate,
               "-l", "0", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", self.name,
               f"--vdev=net_af_packet0,iface={CLI_VETH}", f"--vdev=net_af_packet1,iface={SRV_VETH}",
               "--", "--control", sock, "--name", self.name, "--bootstrap-policy", self.d.policy,
               "--subscriber-port", "0", "--internet-port", "1",
               "--stats", self.stats, "--http-flows", "1024",
               "--idle-sleep-us", "200",  # few packets: don't hold a shared core at 100 %
               "--duration", str(LIFETIME_S - 10)]
        self.dp = self.procs.start(cmd, self.dp_log)

    # -- requests --

    def uidh(self, tag):
        return f"live{PID}-{tag}-{secrets.token_hex(8)}"

    def server_saw(self, path):
        records = [r for r in read_jsonl(self.http_log) if r["path"] == path]
        if len(records) != 1:
            raise Failure(f"the server recorded {len(records)} requests for {path}")
        values = [v for k, v in records[0]["headers"] if k.lower() == "x-uidh"]
        if len(values) != 1:
            raise Failure(f"{path}: the server saw X-UIDH {len(values)} times: {records[0]['headers']}")
        return records[0], values[0]

    def check_http(self, path, sent, received, verdict):
        stripped = verdict != "verdict_pass_consent"
        want = FILLER * len(sent) if stripped else sent
        if received != want:
            raise Failure(f"{path}: expected X-UIDH {'stripped' if stripped else 'intact'} ({want!r}), "
                          f"the server received {received!r}")
        self.expect[verdict] += 1
        self.http["stripped" if stripped else "passed"] += 1
        self.requests += 1
        self.say(f"{path}: X-UIDH {'stripped' if stripped else 'intact'} ({verdict})")

    def keepalive(self, tag, verdict):
        path, sent = f"/keepalive/{tag}", self.uidh(tag)
        self.ka.get(path, sent)
        record, received = self.server_saw(path)
        if record["client"] != [CLIENT, self.ka.local_port]:
            raise Failure(f"{path} came from {record['client']}, not the keep-alive connection "
                          f"{CLIENT}:{self.ka.local_port}")
        self.check_http(path, sent, received, verdict)

    def curl(self, tag, verdict):
        path, sent = f"/curl/{tag}", self.uidh(tag)
        r = run(in_ns(CLI_NS, "curl", "-sS", "--max-time", str(PATIENCE), "-o", "/dev/null", "-w", "%{http_code}",
                      "-H", f"X-UIDH: {sent}", f"http://{SERVER}{path}"), timeout=PATIENCE + 10)
        if r.stdout != "200":
            raise Failure(f"curl {path}: HTTP {r.stdout}")
        record, received = self.server_saw(path)
        if record["client"][0] != CLIENT or record["client"][1] == self.ka.local_port:
            raise Failure(f"curl {path} came from {record['client']}")
        self.check_http(path, sent, received, verdict)

    def dig(self, verdict, tcp=False):
        before = len(read_jsonl(self.dns_log))
        r = run(in_ns(CLI_NS, "dig", *(["+tcp"] if tcp else []), "+subnet=100.64.10.0/24", "+tries=1",
                      f"+time={PATIENCE}", f"@{SERVER}", "example.com", "A"), timeout=PATIENCE + 10, check=False)
        if r.returncode != 0 or "status: NOERROR" not in r.stdout or SERVER not in r.stdout:
            raise Failure(f"dig failed (exit {r.returncode}):\n{r.stdout}{r.stderr}")
        queries = read_jsonl(self.dns_log)[before:]
        transport = "tcp" if tcp else "udp"
        if len(queries) != 1 or not queries[0].get("edns") or queries[0].get("transport") != transport:
            raise Failure(f"the DNS server recorded {queries} for one dig over {transport}")
        options = queries[0]["options"]
        ecs = [data for code, data in options if code == 8]
        stripped = verdict != "verdict_pass_consent"
        # family 1 (IPv4), source /24, scope 0, the /24's three bytes.
        if stripped and ecs:
            raise Failure(f"ECS arrived without consent: {options}")
        if not stripped and ecs != ["0001180064400a"]:
            raise Failure(f"ECS did not arrive intact with consent: {options}")
        if stripped and [12, "00" * 7] not in options:
            raise Failure(f"over {transport}, ECS did not become a zeroed Padding option of its length: {options}")
        self.expect[verdict] += 1
        self.dns["stripped" if stripped else "passed"] += 1
        if stripped:
            self.dns_rewritten[transport] += 1
        self.say(f"dig{' +tcp' if tcp else ''} +subnet: ECS {'stripped' if stripped else 'intact'} ({verdict}); "
                 f"options at the server: {[c for c, _ in options]}")
        return [c for c, _ in options]

    def optgate_log_count(self, pattern):
        with open(self.dp_log, errors="replace") as f:
            return len(re.findall(pattern, f.read()))

    # -- the sequence --

    def run(self):
        self.t0 = time.monotonic()
        topology_up()
        self.say(f"namespaces {CLI_NS}, {SRV_NS}; optgate on {CLI_VETH} (port 0) and {SRV_VETH} (port 1)")
        self.http_log = start_server(self.procs, self.tmp, "http_server.py", 80, "http")
        self.dns_log = start_server(self.procs, self.tmp, "dns_server.py", 53, "dns")

        workdir = os.path.join(self.tmp, "consentd")
        os.mkdir(workdir)
        with open(os.path.join(workdir, "policy.yaml"), "w") as f:
            f.write(POLICY)
        if LEDGER == "postgresql":
            self.pg = PgServer()
        self.d = Daemon(workdir=workdir, pg=self.pg)
        self.workdir2 = os.path.join(self.tmp, "consentd-2")
        os.mkdir(self.workdir2)
        with open(os.path.join(self.workdir2, "policy.yaml"), "w") as f:
            f.write(POLICY)
        self.start_optgate()
        self.wait_synced(PATIENCE)
        self.say("consentd and optgate started; optgate synced")

        # 1. Bound, no consent yet.
        self.enforced("bind", CLIENT, "sub-a", "--source", "radius")
        self.ka = KeepAlive(self.procs, self.tmp)
        self.say(f"keep-alive connection from {CLIENT}:{self.ka.local_port}")
        self.keepalive("1-no-consent", "verdict_strip_no_consent")
        self.curl("1-no-consent", "verdict_strip_no_consent")

        # 2. Opt in.
        self.enforced("grant", "sub-a", "advertising", "--source", "portal", "--notice-version", "2026-01")
        self.keepalive("2-granted", "verdict_pass_consent")
        self.curl("2-granted", "verdict_pass_consent")

        # 3. Opt out: the very next request on the same connection.
        self.enforced("revoke", "sub-a", "advertising", "--source", "portal")
        self.keepalive("3-revoked", "verdict_strip_no_consent")

        # 4. Opt in again, then the address moves to a subscriber without consent.
        self.enforced("grant", "sub-a", "advertising", "--source", "portal", "--notice-version", "2026-01")
        self.keepalive("4-granted-again", "verdict_pass_consent")
        self.enforced("bind", CLIENT, "sub-b", "--source", "radius")
        self.keepalive("4-rebound", "verdict_strip_no_consent")

        # 5. Back to sub-a; then consentd goes away and comes back.
        self.enforced("bind", CLIENT, "sub-a", "--source", "radius")
        self.keepalive("5-bound-back", "verdict_pass_consent")
        stale_logs = self.optgate_log_count(r"consent table stale")
        self.d.stop()
        stopped = time.monotonic()
        self.say("consentd stopped (SIGTERM)")
        # The last contact was at most one heartbeat before the stop, so the
        # table is stale by STALENESS_S after it; optgate logs the transition.
        wait_for("optgate to log that its table went stale",
                 lambda: self.optgate_log_count(r"consent table stale") > stale_logs, PATIENCE)
        self.say(f"optgate: table stale {time.monotonic() - stopped:.2f} s after consentd stopped")
        time.sleep(max(0.0, stopped + STALENESS_S + 0.5 - time.monotonic()))
        self.keepalive("5-consentd-down", "verdict_strip_table_stale")
        self.d.start()
        restarted = time.monotonic()
        self.wait_synced(PATIENCE)
        self.say(f"consentd restarted on the same ledger; optgate synced again after "
                 f"{time.monotonic() - restarted:.2f} s")
        # Nothing changed meanwhile: optgate's resume token names the
        # ledger's head, so the new process resumes it without a snapshot.
        self.resumed_by_token(self.d, "consentd restarted on the same ledger")
        self.keepalive("5-consentd-back", "verdict_pass_consent")

        # 6. DNS with ECS, with and without consent.
        passed_codes = self.dig("verdict_pass_consent")
        self.enforced("revoke", "sub-a", "advertising", "--source", "portal")
        # ECS made Padding in place, over UDP as over TCP (where the stream
        # must keep its length).
        stripped_codes = self.dig("verdict_strip_no_consent")
        if stripped_codes != [12 if c == 8 else c for c in passed_codes]:
            raise Failure(f"stripping ECS changed the other options: {passed_codes} -> {stripped_codes}")
        stripped_codes = self.dig("verdict_strip_no_consent", tcp=True)
        if stripped_codes != [12 if c == 8 else c for c in passed_codes]:
            raise Failure(f"over TCP, stripping ECS changed the other options: {passed_codes} -> {stripped_codes}")
        self.enforced("grant", "sub-a", "advertising", "--source", "portal", "--notice-version", "2026-01")
        passed_tcp = self.dig("verdict_pass_consent", tcp=True)
        if passed_tcp != passed_codes:
            raise Failure(f"over TCP with consent the options changed: {passed_codes} -> {passed_tcp}")

        # 7. Failover to a second consentd; the first dies.
        if self.pg:
            # A standby on the same ledger: it serves once the writer's
            # session ends, with the consents the writer recorded.
            self.d2 = Daemon(workdir=self.workdir2, pg=self.pg, pg_database=self.d.pg_name, standby=True, wait=False)
            wait_for("the second consentd to stand by", lambda: "standing by" in self.d2.read_log(), PATIENCE,
                     interval=0.05)
        else:
            # Its own ledger (on SQLite each consentd has one), granting sub-a.
            self.d2 = Daemon(workdir=self.workdir2)
            self.ctl("bind", CLIENT, "sub-a", "--source", "radius", d=self.d2)
            self.ctl("grant", "sub-a", "advertising", "--source", "portal", "--notice-version", "2026-01",
                     d=self.d2)
        connected_logs = self.optgate_log_count(re.escape("connected to " + os.path.join(self.workdir2, "dp.sock")))
        self.d.kill()
        killed = time.monotonic()
        self.say("first consentd killed (SIGKILL)")
        if self.pg:
            self.d2.wait_listening()
            self.say(f"the standby took the writer's lock and listens {time.monotonic() - killed:.2f} s later")
        self.wait_synced(PATIENCE, self.d2)
        self.say(f"optgate failed over to the second consentd and synced after {time.monotonic() - killed:.2f} s")
        if self.optgate_log_count(re.escape("connected to " + os.path.join(self.workdir2, "dp.sock"))) \
                != connected_logs + 1:
            raise Failure("optgate's log does not say it connected to the second consentd")
        if self.pg:
            # The same ledger: resumed by its token, no snapshot.
            self.resumed_by_token(self.d2, "failed over to the standby")
        elif (self.d2.metric("consentd_dataplane_token_resumes_total"),
              self.d2.metric("consentd_dataplane_snapshots_sent_total")) != (0, 1):
            # Another ledger: its chain is not the one optgate's token names.
            raise Failure("the second consentd, on a ledger of its own, did not send optgate a snapshot")
        self.keepalive("7-failed-over", "verdict_pass_consent")
        self.enforced("revoke", "sub-a", "advertising", "--source", "portal", d=self.d2)
        self.keepalive("7-revoked-on-second", "verdict_strip_no_consent")

        # Every request arrived once, keep-alive ones on one connection.
        all_http = read_jsonl(self.http_log)
        if len(all_http) != self.requests:
            raise Failure(f"the server recorded {len(all_http)} requests, {self.requests} were sent")
        ports = {r["client"][1] for r in all_http if r["path"].startswith("/keepalive/")}
        if ports != {self.ka.local_port}:
            raise Failure(f"keep-alive requests came from ports {ports}")
        ss = run(in_ns(SRV_NS, "ss", "-tnH", "state", "established", "( sport = :80 )"))
        if f"{CLIENT}:{self.ka.local_port}" not in ss.stdout:
            raise Failure(f"the keep-alive connection is not established at the server:\n{ss.stdout}")

        self.procs.stop(self.dp)
        self.check_stats()

    def resumed_by_token(self, d, when):
        got = (d.metric("consentd_dataplane_token_resumes_total"), d.metric("consentd_dataplane_snapshots_sent_total"))
        if got != (1, 0):
            raise Failure(f"{when}: optgate was not resumed by its token (token resumes, snapshots sent: {got})")
        self.say(f"{when}: optgate resumed by its token, no snapshot")

    def check_stats(self):
        if self.dp.returncode != 0:
            raise Failure(f"optgate exited {self.dp.returncode}")
        with open(self.stats) as f:
            s = json.load(f)
        problems = []
        for name, want in self.expect.items():
            if s["counters"][name] != want:
                problems.append(f"counter {name} = {s['counters'][name]}, the servers saw {want}")
        ident = {(i["kind"], i.get("header") or i.get("code")): i for i in s["identifiers"]}
        for key, seen in ((("http_header", "X-UIDH"), self.http), (("dns_option", 8), self.dns)):
            for k in ("stripped", "passed"):
                if ident[key][k] != seen[k]:
                    problems.append(f"{key} {k} = {ident[key][k]}, the servers saw {seen[k]}")
        dest = next(d for d in s["destinations"] if d["name"] == COLLECTOR)
        if (dest["identifiers_stripped"], dest["identifiers_passed"]) != (
                self.http["stripped"] + self.dns["stripped"], self.http["passed"] + self.dns["passed"]):
            problems.append(f"destination {COLLECTOR}: {dest}")
        for name, want in (("dns_rewritten", self.dns_rewritten["udp"]), ("dns_tcp_rewritten", self.dns_rewritten["tcp"])):
            if s["counters"][name] != want:
                problems.append(f"{name} = {s['counters'][name]}, expected {want}")
        if s["packets"]["dropped"] != 0:
            problems.append(f"optgate dropped {s['packets']['dropped']} packets")
        if problems:
            raise Failure("optgate's final counters disagree with what the servers saw:\n  " + "\n  ".join(problems))
        self.say(f"optgate counters agree: {s['packets']}, HTTP {self.http}, DNS {self.dns}, "
                 f"verdicts {self.expect}")

    def dump_logs(self):
        for name in ("optgate.log", "http.log", "dns.log", "keepalive.log", "http.jsonl", "dns.jsonl"):
            path = os.path.join(self.tmp, name)
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    print(f"--- {name}\n{f.read()[-6000:]}")
        if self.d:
            print(f"--- consentd.log\n{self.d.read_log()[-6000:]}")


def on_signal(*_):
    # meson's timeout sends SIGTERM: unwind through `finally` so nothing is
    # left behind, and let no second signal interrupt the cleanup.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(1)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    if os.geteuid() != 0:
        raise SystemExit("live.py needs root (network namespaces, af_packet)")
    missing = [t for t in ("ip", "ethtool", "curl", "dig", "ss", "timeout") if not shutil.which(t)]
    if missing:
        raise SystemExit(f"live.py needs {', '.join(missing)}: run scripts/setup")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    tmp = tempfile.mkdtemp(prefix="optgate-live-")
    live = Live(sys.argv[1], tmp)
    ok = False
    try:
        live.run()
        ok = True
    except Failure as e:
        print(f"FAILED: {e}")
    except Exception:  # a helper that would not start, a timeout: the logs below say why
        traceback.print_exc()
    finally:
        # Each cleanup step runs whatever happened in the one before.
        for step in (live.procs.stop_all, lambda: live.d and live.d.cleanup(), lambda: live.d2 and live.d2.cleanup(),
                     lambda: live.pg and live.pg.cleanup(), topology_down,
                     lambda: ok or live.dump_logs()):
            try:
                step()
            except Exception:
                traceback.print_exc()
        shutil.rmtree(f"/var/run/dpdk/live-{PID}", ignore_errors=True)  # EAL's runtime dir
        if os.environ.get("OPTGATE_LIVE_KEEP"):
            print(f"files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        raise SystemExit(1)
    print(f"live end to end: {live.requests} HTTP requests and 4 DNS queries (2 over TCP) through optgate, "
          f"every verdict as consent said, in {time.monotonic() - live.t0:.1f} s")


if __name__ == "__main__":
    main()
