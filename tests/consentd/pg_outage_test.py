"""consentd on PostgreSQL when PostgreSQL goes away (issue 19,
docs/scale-out.md "Failure cases"):

  - PostgreSQL restarted under 16 writing clients: consentd answers
    503 ledger_unavailable meanwhile, recovers by itself, and loses nothing
    it acknowledged (checked against PostgreSQL and verify-ledger); what it
    answered "nothing was recorded" is not in the ledger.
  - a commit whose answer is lost (the session cut after PostgreSQL
    committed): consentd answers that it may have been recorded, finds the
    commit in the ledger at its next transaction, and takes it into its
    state instead of refusing every later write; its data plane gets the
    table again, with that commit's change.
  - a standby takes over when the writer is SIGKILLed under 16 writing
    clients: nothing acknowledged is lost, and the writer's data plane goes
    round to the standby and enforces there.
  - an import cut short by PostgreSQL stopping: consentd cannot read its
    state back, stays up with none of the import in memory, refuses
    changes until PostgreSQL is back, then reads the state and goes on.

Both run a PostgreSQL 15 of their own (pg_server.py) with fsync on.
"""
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import OPTGATECTL, PATIENCE, Daemon, eventually  # noqa: E402
from paced_dataplane import applied, reported, start_paced  # noqa: E402
from pg_proxy import CuttingProxy  # noqa: E402
from pg_server import PgServer  # noqa: E402

GRANT = {"source": "portal", "notice_version": "2024-05"}


def events(pg, d, where="true"):
    return pg.psql(f"SELECT subscriber FROM events WHERE {where} ORDER BY seq", dbname=d.pg_name).split()


class PgOutageTest(unittest.TestCase):
    def setUp(self):
        self.pg = PgServer()
        self.tmp = tempfile.mkdtemp(prefix="optgate-pg-outage-")
        self.replay = None

    def tearDown(self):
        if self.replay is not None:
            self.replay.kill()
            self.replay.wait()
        self.pg.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_postgresql_restarted_under_16_writing_clients(self):
        d = Daemon(pg=self.pg)
        try:
            lock = threading.Lock()
            answers = []  # (subscriber, status, error message)
            stop = threading.Event()

            def client(t):
                conn = d.connect(timeout=PATIENCE)
                n = 0
                end = time.monotonic() + 6 * PATIENCE
                while not stop.is_set() and time.monotonic() < end:
                    sub = f"load-{t}-{n}"
                    n += 1
                    try:
                        st, _, b = d.request("PUT", f"/v1/subscribers/{sub}/consents/advertising", GRANT, conn=conn)
                        message = b["error"]["message"] if st != 200 else ""
                    except (OSError, http.client.HTTPException) as e:
                        st, message = None, str(e)  # no answer: either way
                        conn.close()
                        conn = d.connect(timeout=PATIENCE)
                    with lock:
                        answers.append((sub, st, message))
                    if st != 200:
                        time.sleep(0.01)
                conn.close()

            def count(status):
                with lock:
                    return sum(1 for a in answers if a[1] == status)

            threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(16)]
            for t in threads:
                t.start()
            self.assertTrue(eventually(lambda: count(200) >= 100), "no load before the restart")
            self.pg.stop()
            self.assertTrue(eventually(lambda: count(503) >= 16), "no 503 while PostgreSQL is down")
            # Reads are refused too, and the daemon stays up.
            st, _, b = d.request("GET", "/v1/subscribers/load-0-0", token="auditor")
            self.assertEqual((st, b["error"]["code"]), (503, "ledger_unavailable"))
            self.assertTrue(d.alive())
            acked_before = count(200)
            self.pg.start()
            self.assertTrue(eventually(lambda: count(200) >= acked_before + 100), "consentd did not recover; its log ends:\n" + d.read_log()[-3000:])
            stop.set()
            for t in threads:
                t.join(PATIENCE)

            recorded = set(events(self.pg, d))
            with lock:
                acked = [a[0] for a in answers if a[1] == 200]
                refused = [a for a in answers if a[1] == 503]
            lost = [s for s in acked if s not in recorded]
            self.assertEqual(lost, [], "acknowledged grants missing from PostgreSQL")
            # "nothing was recorded" is true; "may have been recorded" may go either way.
            wrongly_refused = [a[0] for a in refused if "nothing was recorded" in a[2] and a[0] in recorded]
            self.assertEqual(wrongly_refused, [])
            self.assertTrue(all("ledger" in a[2] for a in refused), refused[:3])
            r = subprocess.run([OPTGATECTL, "verify-ledger", d.db], capture_output=True, text=True, timeout=PATIENCE)
            self.assertEqual(r.returncode, 0, r.stderr)
            print(f"{len(acked)} acknowledged, {len(refused)} refused with 503 during the restart, "
                  f"{len(recorded)} events in PostgreSQL", file=sys.stderr)
            # The state in memory agrees: each acknowledged subscriber reads as granted.
            for sub in acked[-5:]:
                st, _, s = d.request("GET", f"/v1/subscribers/{sub}", token="auditor")
                self.assertEqual((st, [c["purpose"] for c in s["consents"]]), (200, ["advertising"]))
        finally:
            d.cleanup()

    def test_a_standby_takes_over_when_the_writer_is_killed_under_16_clients(self):
        a = Daemon(pg=self.pg)
        b = Daemon(pg=self.pg, pg_database=a.pg_name, standby=True, wait=False)
        try:
            self.assertTrue(eventually(lambda: "standing by" in b.read_log()), b.read_log())
            self.assertFalse(os.path.exists(b.port_file))  # not serving: a holds the ledger
            # A data plane on A, then B.
            self.replay, _ = start_paced(self.tmp, "edge-1", a, b)
            self.assertTrue(eventually(lambda: applied(a, "edge-1") >= 0), a.read_log()[-2000:])
            lock = threading.Lock()
            target = {"d": a}
            answers = []  # (subscriber, daemon, status)
            stop = threading.Event()

            def client(t):
                n = 0
                end = time.monotonic() + 6 * PATIENCE
                while not stop.is_set() and time.monotonic() < end:
                    with lock:
                        d = target["d"]
                    sub = f"ha-{t}-{n}"
                    n += 1
                    try:
                        st, _, _ = d.request("PUT", f"/v1/subscribers/{sub}/consents/advertising", GRANT)
                    except (OSError, http.client.HTTPException):
                        st = None  # a's last moments: no answer, either way
                        time.sleep(0.01)
                    with lock:
                        answers.append((sub, d, st))

            def acked(d):
                with lock:
                    return sum(1 for x in answers if x[1] is d and x[2] == 200)

            threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(16)]
            for t in threads:
                t.start()
            self.assertTrue(eventually(lambda: acked(a) >= 100))
            killed = time.monotonic()
            a.kill()
            b.wait_listening()
            took = time.monotonic() - killed
            with lock:
                target["d"] = b
            self.assertTrue(eventually(lambda: acked(b) >= 100), b.read_log())
            stop.set()
            for t in threads:
                t.join(PATIENCE)
            # The data plane went round to B and keeps enforcing: it has
            # B's head, and a grant at B waits for it.
            self.assertTrue(eventually(lambda: applied(b, "edge-1") == b.metric("consentd_ledger_head_seq")),
                            b.read_log()[-2000:])
            st, _, j = b.request("PUT", f"/v1/subscribers/after-kill/consents/advertising?wait=enforced&timeout={PATIENCE}s",
                                 GRANT)
            self.assertEqual((st, j["enforcement"]["status"]), (200, "enforced"), j)
            self.assertEqual([x["name"] for x in j["enforcement"]["dataplanes"]], ["edge-1"], j)
            self.assertIsNone(self.replay.poll(), "the data plane exited")
            print(f"the standby serves {took:.2f} s after the writer was killed; "
                  f"{acked(a)} grants acknowledged by the writer, {acked(b)} by the standby", file=sys.stderr)
            recorded = set(events(self.pg, b))
            with lock:
                lost = [x[0] for x in answers if x[2] == 200 and x[0] not in recorded]
                first = next(x[0] for x in answers if x[1] is a and x[2] == 200)
            self.assertEqual(lost, [])
            # The standby's state holds what the writer recorded.
            st, _, s = b.request("GET", f"/v1/subscribers/{first}", token="auditor")
            self.assertEqual((st, [c["purpose"] for c in s["consents"]]), (200, ["advertising"]))
            r = subprocess.run([OPTGATECTL, "verify-ledger", b.db], capture_output=True, text=True, timeout=PATIENCE)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            b.cleanup()
            a.cleanup()

    def test_a_commit_whose_answer_was_lost_is_found_and_taken_in(self):
        proxy = CuttingProxy(self.pg.dir)
        d = Daemon(pg=self.pg, pg_host=proxy.dir)
        try:
            st, _, b = d.request("PUT", "/v1/bindings/100.64.2.1", {"subscriber": "alice"})
            self.assertEqual(st, 200, b)
            self.assertEqual(d.metric("consentd_table_entries"), 1)
            self.replay, _ = start_paced(self.tmp, "edge-1", d)
            self.assertTrue(eventually(lambda: reported(d, "edge-1", "table_entries") == 1), d.read_log()[-2000:])
            proxy.arm()
            st, _, b = d.request("PUT", "/v1/bindings/100.64.2.2", {"subscriber": "bob"})
            self.assertTrue(proxy.cut.is_set())
            self.assertEqual((st, b["error"]["code"]), (503, "ledger_unavailable"), b)
            self.assertIn("may have been recorded", b["error"]["message"])
            self.assertEqual(events(self.pg, d), ["alice", "bob"])  # it was
            # The next write reconnects, finds bob's bind at the head, takes it in.
            st, _, b = d.request("PUT", "/v1/bindings/100.64.2.3", {"subscriber": "carol"})
            self.assertEqual(st, 200, b)
            self.assertEqual(d.metric("consentd_table_entries"), 3)
            self.assertIn("is in the ledger after all", d.read_log())
            # The data plane has bob's too, which never came as a commit: the
            # table was sent again, then carol's bind as a delta.
            self.assertTrue(eventually(lambda: reported(d, "edge-1", "table_entries") == 3),
                            f"the data plane reports {reported(d, 'edge-1', 'table_entries')} entries")
            self.assertEqual(d.metric("consentd_dataplane_snapshots_sent_total"), 2)
            # A retry of bob's bind changes nothing, as its answer said.
            st, _, b = d.request("PUT", "/v1/bindings/100.64.2.2", {"subscriber": "bob"})
            self.assertEqual((st, b["changed"]), (200, False))
            self.assertEqual(d.metric("consentd_table_entries"), 3)
            r = subprocess.run([OPTGATECTL, "verify-ledger", d.db], capture_output=True, text=True, timeout=PATIENCE)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            d.cleanup()
            proxy.close()

    def test_a_commit_whose_answer_was_lost_is_taken_in_while_idle(self):
        # No write comes after the lost answer: the writer's idle check
        # (every fence_after / 4) reconnects, finds its own commit at the
        # head, and takes it in; it is not "another consentd" appending,
        # and the writer never turns follower.
        proxy = CuttingProxy(self.pg.dir)
        d = Daemon(pg=self.pg, pg_host=proxy.dir)
        try:
            st, _, b = d.request("PUT", "/v1/bindings/100.64.2.1", {"subscriber": "alice"})
            self.assertEqual(st, 200, b)
            proxy.arm()
            st, _, b = d.request("PUT", "/v1/bindings/100.64.2.2", {"subscriber": "bob"})
            self.assertTrue(proxy.cut.is_set())
            self.assertEqual((st, b["error"]["code"]), (503, "ledger_unavailable"), b)
            self.assertEqual(events(self.pg, d), ["alice", "bob"])
            self.assertTrue(eventually(lambda: "is in the ledger after all" in d.read_log()), d.read_log()[-2000:])
            # The line is logged as the state is read again; the gauges are
            # published once it has been.
            self.assertTrue(eventually(lambda: d.metric("consentd_table_entries") == 2),
                            f"{d.metric('consentd_table_entries')} entries; " + d.read_log()[-2000:])
            self.assertNotIn("following it", d.read_log())
            self.assertEqual(d.request("GET", "/healthz", token=None)[2], {"status": "ok", "writer": True})
            st, _, b = d.request("PUT", "/v1/bindings/100.64.2.3", {"subscriber": "carol"})
            self.assertEqual(st, 200, b)
            self.assertEqual(d.metric("consentd_table_entries"), 3)
        finally:
            d.cleanup()
            proxy.close()

    def test_an_import_cut_short_by_postgresql_stopping_leaves_nothing_in_memory(self):
        """An import cannot be undone in memory: consentd reads its state
        again from the ledger. With PostgreSQL down that read fails too; the
        daemon stays up, keeps none of the import, refuses changes until it
        can read the ledger again, then goes on."""
        d = Daemon(pg=self.pg)
        try:
            st, _, b = d.request("PUT", "/v1/subscribers/before/consents/advertising", GRANT)
            self.assertEqual(st, 200, b)
            # The import's last event waits in PostgreSQL until the server stops.
            self.pg.psql("CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                         "IF NEW.subscriber = 'imp-last' THEN PERFORM pg_sleep(600); END IF; RETURN NEW; END $$; "
                         "CREATE TRIGGER stall BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION stall()",
                         dbname=d.pg_name)
            lines = [f'{{"subscriber": "imp-{i}", "addresses": ["100.64.{i // 250}.{i % 250 + 1}"], '
                     f'"consents": ["advertising"], "notice_version": "2024-05"}}' for i in range(2000)]
            lines.append('{"subscriber": "imp-last", "consents": ["advertising"], "notice_version": "2024-05"}')
            answer = {}

            def run_import():
                try:
                    answer["reply"] = d.request("POST", "/v1/import", "\n".join(lines) + "\n", token="ops",
                                                headers={"Content-Type": "application/x-ndjson"})
                except (OSError, http.client.HTTPException) as e:
                    answer["reply"] = (None, None, str(e))

            importer = threading.Thread(target=run_import, daemon=True)
            importer.start()
            stalled = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
            self.assertTrue(eventually(lambda: self.pg.psql(stalled).strip() == "1" or "reply" in answer),
                            d.read_log())
            self.assertNotIn("reply", answer)  # answered before it reached the stalled event
            self.pg.stop()
            importer.join(PATIENCE)
            st, _, b = answer["reply"]
            self.assertEqual((st, b["error"]["code"]), (503, "ledger_unavailable"), b)
            self.assertTrue(d.alive(), d.read_log())
            self.assertIn("cannot read the state again from the ledger", d.read_log())
            # Nothing of the import is served meanwhile: the state is empty.
            self.assertEqual(d.metric("consentd_subscribers"), 0)
            st, _, b = d.request("PUT", "/v1/subscribers/during/consents/advertising", GRANT)
            self.assertEqual((st, b["error"]["code"]), (503, "ledger_unavailable"), b)

            self.pg.start()
            self.pg.psql("DROP TRIGGER stall ON events; DROP FUNCTION stall()", dbname=d.pg_name)

            def granted():
                st, _, _ = d.request("PUT", "/v1/subscribers/after/consents/advertising", GRANT)
                return st == 200

            self.assertTrue(eventually(granted), d.read_log())
            self.assertIn("the state is read again from the ledger", d.read_log())
            self.assertEqual(events(self.pg, d), ["before", "after"])
            self.assertEqual(d.metric("consentd_subscribers"), 2)  # before and after; no imp-*
            st, _, _ = d.request("GET", "/v1/subscribers/imp-0", token="auditor")
            self.assertEqual(st, 404, d.read_log()[-1500:])
            r = subprocess.run([OPTGATECTL, "verify-ledger", d.db], capture_output=True, text=True, timeout=PATIENCE)
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
