"""Followers: several consentd on one PostgreSQL ledger, every one serving
reads and data planes (issue 19, docs/scale-out.md "Followers").

A writer A and a follower B (ledger.follow) on one database, a data plane
(optgate-replay --control) connected to B only:

  - B listens at once, says it follows, and serves reads;
  - changes made at A reach B's state (its gauges) and B's data plane (its
    applied sequence in B's GET /v1/dataplanes) without anyone calling B;
  - a change sent to B is answered 503 not_writer, naming A as it
    advertises itself, and nothing is recorded; optgatectl given B's URL
    and then A's sends it on to A; an Accounting-Request
    to B's RADIUS listener is not answered (the NAS goes on to its next
    server) and counted as dropped, reason not_writer;
  - A is SIGKILLed: B takes the writer's lock, records changes, and its
    data plane, still on the same connection, applies them; no event A
    acknowledged is lost and verify-ledger passes.

A follower cut off from PostgreSQL (a proxy that stops passing bytes, as a
network cut does) while the writer records a revocation: after
ledger.fence_after it answers /healthz 503 out_of_step and closes its data
plane, which goes to the next consentd in its list (A) and applies the
revocation there, resumed by its token (no snapshot); a data plane that names B alone is closed with no frame
(its table would go stale); with the proxy passing again, B is in step.

?wait=enforced at the writer waits for the follower's data plane: enforced
once it has applied the change; timeout while it is stopped (SIGSTOP); once
the follower is killed, its data plane is forgotten after PeerLink's
silence (3.5 s) and the writer answers no_dataplanes.

A follower started while the writer writes, event for event, and the
deltas its data planes hear; a writer whose lock another took follows it:
test_pg_follower.cpp (consentd-pg).

A PostgreSQL 15 of the test's own (pg_server.py).
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import OPTGATECTL, PATIENCE, Daemon, eventually  # noqa: E402
from paced_dataplane import REPLAY, applied, dataplane, start_paced, stop  # noqa: E402
from pg_proxy import StallingProxy  # noqa: E402
from pg_server import PgServer  # noqa: E402
from radius_test import RADIUS_CONFIG, answered, radclient, start_attrs  # noqa: E402

GRANT = {"source": "portal", "notice_version": "2024-05"}


class FollowerTest(unittest.TestCase):
    def setUp(self):
        self.pg = PgServer()
        self.tmp = tempfile.mkdtemp(prefix="optgate-follower-")
        self.replay = None

    def tearDown(self):
        if self.replay is not None:
            self.replay.kill()
            self.replay.wait()
        self.pg.cleanup()

    def paced_dataplane(self, name, *consentds):
        """A data plane trying each of `consentds` in turn (self.replay,
        killed at tearDown). Returns its paced capture."""
        self.replay, capture = start_paced(self.tmp, name, *consentds)
        return capture

    def test_a_follower_serves_reads_and_data_planes_and_takes_over(self):
        a = Daemon(pg=self.pg)
        b = Daemon(pg=self.pg, pg_database=a.pg_name, follow=True, limits=RADIUS_CONFIG)
        try:
            self.assertIn("following", b.read_log())
            self.assertIn("(following its writer)", b.read_log())
            self.assertEqual((a.metric("consentd_ledger_writer"), b.metric("consentd_ledger_writer")), (1, 0))
            self.assertEqual(b.request("GET", "/healthz", token=None)[2], {"status": "ok", "writer": False})
            # A follower may not rewrite the derived tables.
            c = Daemon(pg=self.pg, pg_database=a.pg_name, follow=True, args=["--rebuild-derived-tables"],
                       wait=False)
            try:
                self.assertEqual(c.proc.wait(PATIENCE), 1)
                self.assertIn("--rebuild-derived-tables writes, and another consentd is the writer", c.read_log())
            finally:
                c.cleanup()
            # A change at A reaches B's state.
            st, _, j = a.request("PUT", "/v1/bindings/100.64.7.1", {"subscriber": "early"})
            self.assertEqual(st, 200, j)
            self.assertTrue(eventually(lambda: b.metric("consentd_table_entries") == 1), b.read_log()[-2000:])

            # A data plane on B only.
            self.paced_dataplane("edge-b", b)
            self.assertTrue(eventually(lambda: dataplane(b, "edge-b") is not None), b.read_log()[-2000:])
            snapshots = b.metric("consentd_dataplane_snapshots_sent_total")

            # Changes at A reach B's state and B's data plane.
            for i in range(1, 4):
                st, _, j = a.request("PUT", f"/v1/bindings/100.64.7.{i + 1}", {"subscriber": f"sub-{i}"})
                self.assertEqual(st, 200, j)
                st, _, j = a.request("PUT", f"/v1/subscribers/sub-{i}/consents/advertising", GRANT)
                self.assertEqual(st, 200, j)
            head = a.metric("consentd_ledger_head_seq")
            self.assertTrue(eventually(lambda: applied(b, "edge-b") == head),
                            f"B's data plane at {applied(b, 'edge-b')}, A's head {head}")
            self.assertEqual(b.metric("consentd_ledger_head_seq"), head)
            self.assertEqual(b.metric("consentd_table_entries"), a.metric("consentd_table_entries"))
            self.assertEqual(b.metric("consentd_table_entries"), 4)
            # Deltas, not a table resent each time.
            self.assertEqual(b.metric("consentd_dataplane_snapshots_sent_total"), snapshots)

            # Reads at B.
            st, _, s = b.request("GET", "/v1/subscribers/sub-2", token="auditor")
            self.assertEqual((st, [c["purpose"] for c in s["consents"]]), (200, ["advertising"]))

            # Changes at B: refused, naming A; nothing recorded.
            st, _, j = b.request("PUT", "/v1/subscribers/sub-9/consents/advertising", GRANT)
            self.assertEqual((st, j["error"]["code"]), (503, "not_writer"), j)
            self.assertIn(f"consentd http://127.0.0.1:{a.port}", j["error"]["message"])
            st, _, j = b.request("PUT", "/v1/bindings/100.64.7.9", {"subscriber": "sub-9"})
            self.assertEqual((st, j["error"]["code"]), (503, "not_writer"), j)
            # optgatectl given B first: refused there, the change goes to A.
            r = b.ctl("grant", "sub-8", "advertising", "--source", "portal", "--notice-version", "2024-05",
                      env={"OPTGATE_SERVER": f"http://127.0.0.1:{b.port},http://127.0.0.1:{a.port}"})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(a.metric("consentd_ledger_head_seq"), head + 1)
            head += 1
            # With B alone, the refusal is what it says.
            r = b.ctl("grant", "sub-8", "advertising", "--source", "portal", "--notice-version", "2024-05")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("not_writer", r.stdout + r.stderr)

            # Accounting at B: not answered (the NAS tries its next
            # server), counted as such, nothing bound.
            r = radclient(b, start_attrs("radius-1", "s-1", "Framed-IP-Address = 100.64.7.20"), timeout=2)
            self.assertFalse(answered(r), r.stdout)
            self.assertTrue(eventually(lambda: b.metric(
                'consentd_radius_drops_total{client="bng-1",reason="not_writer"}') >= 1),
                [x for x in b.request("GET", "/metrics", token="auditor")[2].splitlines() if "radius" in x])
            self.assertEqual(a.metric("consentd_ledger_head_seq"), head)

            # A dies: B takes over, its data plane stays with it.
            killed = time.monotonic()
            a.kill()
            self.assertTrue(eventually(lambda: "took the writer's lock" in b.read_log(), timeout=PATIENCE),
                            b.read_log()[-2000:])
            print(f"the follower records {time.monotonic() - killed:.2f} s after the writer was killed",
                  file=sys.stderr)
            self.assertEqual(b.metric("consentd_ledger_writer"), 1)
            self.assertEqual(b.request("GET", "/healthz", token=None)[2], {"status": "ok", "writer": True})
            st, _, j = b.request("PUT", "/v1/subscribers/sub-9/consents/advertising", GRANT)
            self.assertEqual(st, 200, j)
            st, _, j = b.request("PUT", "/v1/bindings/100.64.7.9", {"subscriber": "sub-9"})
            self.assertEqual(st, 200, j)
            new_head = b.metric("consentd_ledger_head_seq")
            self.assertEqual(new_head, head + 2)
            self.assertTrue(eventually(lambda: applied(b, "edge-b") == new_head))
            self.assertEqual(b.metric("consentd_dataplane_snapshots_sent_total"), snapshots)
            self.assertEqual(b.metric("consentd_table_entries"), 5)
            self.assertIsNone(self.replay.poll(), "the data plane exited")
            # Nothing A acknowledged is lost; the chain is whole.
            subs = self.pg.psql("SELECT subscriber FROM events ORDER BY seq", dbname=a.pg_name).split()
            self.assertEqual(subs.count("sub-2"), 2)  # its bind and its grant
            self.assertEqual(len(subs), new_head)
            r = subprocess.run([OPTGATECTL, "verify-ledger", b.db], capture_output=True, text=True,
                               timeout=PATIENCE)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            b.cleanup()
            a.cleanup()

    def test_wait_enforced_at_the_writer_waits_for_the_followers_data_planes(self):
        a = Daemon(pg=self.pg)
        b = Daemon(pg=self.pg, pg_database=a.pg_name, follow=True)
        try:
            self.paced_dataplane("edge-b", b)
            self.assertTrue(eventually(lambda: dataplane(b, "edge-b") is not None), b.read_log()[-2000:])
            # A hears of it from B (PeerLink); A has none of its own.
            self.assertTrue(eventually(lambda: a.metric("consentd_peer_dataplanes") == 1), a.read_log()[-2000:])
            self.assertEqual(a.metric("consentd_dataplanes_connected"), 0)
            self.assertEqual(b.metric("consentd_peer_dataplanes"), 0)

            # A grant at A waits until B's data plane has applied it.
            st, _, j = a.request("PUT", f"/v1/subscribers/w-1/consents/advertising?wait=enforced&timeout={PATIENCE}s",
                                 GRANT)
            self.assertEqual(st, 200, j)
            e = j["enforcement"]
            self.assertEqual(e["status"], "enforced", e)
            [row] = e["dataplanes"]
            self.assertEqual((row["name"], row["instance"], row["acknowledged"]),
                             ("edge-b", f"consentd http://127.0.0.1:{b.port}", True), e)
            self.assertGreaterEqual(row["applied_seq"], j["seq"])
            self.assertGreaterEqual(applied(b, "edge-b"), j["seq"])

            # Stopped, it applies nothing: the wait at A times out, naming it.
            stop(self.replay)
            try:
                st, _, j = a.request("DELETE", "/v1/subscribers/w-1/consents/advertising?wait=enforced&timeout=1s",
                                     {"source": "portal"})
                self.assertEqual(st, 200, j)
                e = j["enforcement"]
                self.assertEqual(e["status"], "timeout", e)
                self.assertEqual([(r["name"], r["acknowledged"]) for r in e["dataplanes"]], [("edge-b", False)])
            finally:
                self.replay.send_signal(signal.SIGCONT)
            revoked = j["seq"]
            self.assertTrue(eventually(lambda: applied(b, "edge-b") >= revoked))

            # B dies: A forgets its data plane once B stops speaking of it.
            b.kill()
            self.assertTrue(eventually(lambda: a.metric("consentd_peer_dataplanes") == 0), a.read_log()[-2000:])
            st, _, j = a.request("PUT", "/v1/subscribers/w-2/consents/advertising?wait=enforced&timeout=1s", GRANT)
            self.assertEqual((st, j["enforcement"]["status"]), (200, "no_dataplanes"), j)
        finally:
            b.cleanup()
            a.cleanup()

    def test_a_follower_cut_off_from_postgresql_hands_its_data_planes_over(self):
        proxy = StallingProxy(self.pg.dir)
        a = Daemon(pg=self.pg)
        b = Daemon(pg=self.pg, pg_database=a.pg_name, pg_host=proxy.dir, follow=True, fence_after="1s")
        try:
            st, _, j = a.request("PUT", "/v1/bindings/100.64.8.1", {"subscriber": "cut-1"})
            self.assertEqual(st, 200, j)
            st, _, j = a.request("PUT", "/v1/subscribers/cut-1/consents/advertising", GRANT)
            self.assertEqual(st, 200, j)
            # A data plane that tries B, then A.
            capture = self.paced_dataplane("edge-1", b, a)
            head = a.metric("consentd_ledger_head_seq")
            self.assertTrue(eventually(lambda: applied(b, "edge-1") == head), b.read_log()[-2000:])
            self.assertEqual(b.request("GET", "/healthz", token=None)[:3:2], (200, {"status": "ok", "writer": False}))
            self.assertEqual(b.metric("consentd_dataplanes_fenced"), 0)

            # B is cut off; A records a revocation B cannot see.
            proxy.stall()
            st, _, j = a.request("DELETE", "/v1/subscribers/cut-1/consents/advertising", {"source": "portal"})
            self.assertEqual(st, 200, j)
            revoked = a.metric("consentd_ledger_head_seq")
            self.assertEqual(revoked, head + 1)
            # B goes out of step and closes its data plane, which takes the
            # table from A, revocation included.
            self.assertTrue(eventually(lambda: b.request("GET", "/healthz", token=None)[0] == 503),
                            b.read_log()[-2000:])
            self.assertEqual(b.request("GET", "/healthz", token=None)[2], {"status": "out_of_step", "writer": False})
            self.assertTrue(eventually(lambda: applied(a, "edge-1") == revoked), a.read_log()[-2000:])
            # A holds the chain B's table came from: it resumed the data
            # plane by its token, with the revocation as a delta.
            self.assertEqual(a.metric("consentd_dataplane_token_resumes_total"), 1)
            self.assertEqual(a.metric("consentd_dataplane_snapshots_sent_total"), 0)
            self.assertIsNone(dataplane(b, "edge-1"))
            self.assertEqual(b.metric("consentd_ledger_head_seq"), head)  # it never saw the revocation
            self.assertEqual(b.metric("consentd_dataplanes_fenced"), 1)
            self.assertEqual(b.metric("consentd_dataplane_fences_total"), 1)
            self.assertIn("out of step with the ledger: closed 1 data planes", b.read_log())
            # A data plane that names B alone gets no frame at all (any frame
            # would keep its table fresh): no table within its timeout.
            r = subprocess.run(
                [REPLAY, "--control", os.path.join(b.dir, "dp.sock"), "--name", "edge-2", "--control-timeout", "2s",
                 capture, os.path.join(self.tmp, "out-2.pcap")], capture_output=True, text=True, timeout=PATIENCE)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("no snapshot from consentd", r.stderr)
            self.assertGreaterEqual(
                b.metric('consentd_dataplane_connections_refused_total{reason="out_of_step"}'), 1)

            # The cut heals: B reads on, and is in step again.
            proxy.flow()
            self.assertTrue(eventually(lambda: b.request("GET", "/healthz", token=None)[0] == 200),
                            b.read_log()[-2000:])
            self.assertEqual(b.metric("consentd_ledger_head_seq"), revoked)
            self.assertTrue(eventually(lambda: b.metric("consentd_dataplanes_fenced") == 0))
            self.assertIn("in step with the ledger again", b.read_log())
            self.assertIsNone(self.replay.poll(), "the data plane exited")
        finally:
            proxy.flow()
            b.cleanup()
            a.cleanup()
            proxy.close()


if __name__ == "__main__":
    unittest.main()
