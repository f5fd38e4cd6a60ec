"""consentd on PostgreSQL over TCP when the writer's machine goes silent
(docs/scale-out.md, "Settings for failover").

A writer that dies with its machine, or whose network is cut, closes
nothing: PostgreSQL keeps its session, and the writer's advisory lock with
it, until TCP keepalives say the client is gone. The server's own default
is the kernel's two hours of silence. consentd gives PostgreSQL's end of
each of its sessions the keepalives it uses on its own end (SET
tcp_keepalives_*, client_connection_check_interval), so a standby takes over
in seconds whatever postgresql.conf says.

    root netns                                   netns og-pgka-PID
    PostgreSQL on HOST:5432 ── opk-PID ══ veth ══ ka0 NS ── consentd A (writer)
    consentd B (standby, Unix socket)

The cut is silent: a blackhole route in A's namespace to PostgreSQL's
address drops everything A's machine would send (its replies to the
server's keepalive probes included), and nothing is closed or refused.
The server here is started without any tcp_keepalives_* of its own.

Needs root (network namespaces) and ip.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import PATIENCE, Daemon, eventually  # noqa: E402
from pg_server import PgServer  # noqa: E402

GRANT = {"source": "portal", "notice_version": "2024-05"}
PID = os.getpid()
NS = f"og-pgka-{PID}"
HOST_IF = f"opk-{PID}"
# A /30 of 198.18.0.0/15 (RFC 2544's benchmarking range) of this process's own.
_base = (198 << 24) | (18 << 16) | ((PID % 32768) * 4)
HOST = ".".join(str((_base + 1) >> s & 255) for s in (24, 16, 8, 0))
NS_ADDR = ".".join(str((_base + 2) >> s & 255) for s in (24, 16, 8, 0))


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=PATIENCE)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def in_ns(*cmd):
    return run("ip", "netns", "exec", NS, *cmd)


class WriterGoneSilentTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            raise RuntimeError("pg_keepalive_test.py needs root (network namespaces)")
        self.tmp = tempfile.mkdtemp(prefix="optgate-pg-keepalive-")
        self.pg = None
        self.daemons = []
        run("ip", "netns", "add", NS)
        run("ip", "link", "add", HOST_IF, "address", "02:00:00:00:4b:01", "type", "veth",
            "peer", "name", "ka0", "address", "02:00:00:00:4b:02", "netns", NS)
        run("ip", "addr", "add", f"{HOST}/30", "dev", HOST_IF)
        run("ip", "link", "set", HOST_IF, "up")
        in_ns("ip", "addr", "add", f"{NS_ADDR}/30", "dev", "ka0")
        in_ns("ip", "link", "set", "ka0", "up")
        in_ns("ip", "link", "set", "lo", "up")
        self.pg = PgServer(listen=HOST, clients=f"{NS_ADDR}/32")
        # The server keeps the kernel's keepalive defaults: nothing here
        # ends a silent client's session sooner than two hours.
        # (SHOW would read 0 over psql's Unix socket whatever the setting;
        # pg_settings says where the server's value comes from.)
        for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"):
            self.assertEqual(self.pg.psql(f"SELECT source FROM pg_settings WHERE name = '{name}'").strip(),
                             "default", name)

    def tearDown(self):
        for d in self.daemons:
            if d.proc and d.proc.poll() is None:
                d.kill()
            shutil.rmtree(d.dir, ignore_errors=True)
        if self.pg is not None:
            self.pg.cleanup()
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_a_standby_takes_over_from_a_writer_gone_silent(self):
        a = Daemon(pg=self.pg, pg_host=HOST, netns=NS, address=NS_ADDR)
        self.daemons.append(a)
        b = Daemon(pg=self.pg, pg_database=a.pg_name, standby=True, wait=False)
        self.daemons.append(b)
        st, _, j = a.request("PUT", "/v1/subscribers/before-the-cut/consents/advertising", GRANT)
        self.assertEqual(st, 200, j)
        self.assertTrue(eventually(lambda: "standing by" in b.read_log()), b.read_log())
        # A's session as the server sees it: over TCP, from A's namespace.
        sessions = self.pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{NS_ADDR}'",
                                dbname=a.pg_name)
        self.assertGreaterEqual(int(sessions), 1)

        in_ns("ip", "route", "add", "blackhole", f"{HOST}/32")
        cut = time.monotonic()
        b.wait_listening(timeout=PATIENCE)
        took = time.monotonic() - cut
        print(f"the standby serves {took:.1f} s after the writer went silent", file=sys.stderr)
        # Nothing A acknowledged is lost; B takes changes.
        st, _, j = b.request("GET", "/v1/subscribers/before-the-cut", token="auditor")
        self.assertEqual(st, 200, j)
        self.assertEqual([c["purpose"] for c in j["consents"]], ["advertising"], j)
        st, _, j = b.request("PUT", "/v1/subscribers/after-the-cut/consents/advertising", GRANT)
        self.assertEqual(st, 200, j)
        # The server ended A's session: no session from A's address is left.
        self.assertTrue(eventually(lambda: self.pg.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '{NS_ADDR}'").strip() == "0"),
            self.pg.read_log()[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
