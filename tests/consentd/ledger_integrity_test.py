#!/usr/bin/python3
"""Ledger integrity at startup (issue 17 item 6, docs/consentd.md "Startup
integrity check"): a ledger edited with sqlite3 while consentd was stopped
(a derived row planted or removed, a schema object planted, dropped or
redefined) is refused by consentd at start and by optgatectl verify-ledger,
both naming what differs; --rebuild-derived-tables rebuilds consents and
bindings from the events and nothing else.
"""
import os
import sqlite3
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import CONSENTD, OPTGATECTL, PATIENCE, Daemon  # noqa: E402

GRANT = {"source": "portal", "notice_version": "2024-05"}


def edit(db, script):
    """What an intruder with write access to the file does, consentd stopped."""
    c = sqlite3.connect(db)
    try:
        c.executescript(script)
    finally:
        c.close()


def verify(db):
    return subprocess.run([OPTGATECTL, "verify-ledger", db], capture_output=True, text=True, timeout=PATIENCE * 2)


class LedgerIntegrityTest(unittest.TestCase):
    def setUp(self):
        # A small history: alice grants two purposes, revokes one, binds an address.
        self.d = Daemon()
        for method, path, body in [("PUT", "/v1/subscribers/alice/consents/advertising", GRANT),
                                   ("PUT", "/v1/subscribers/alice/consents/analytics", GRANT),
                                   ("DELETE", "/v1/subscribers/alice/consents/analytics", {"source": "portal"}),
                                   ("PUT", "/v1/bindings/100.64.0.7", {"subscriber": "alice", "source": "radius"})]:
            st, _, body = self.d.request(method, path, body)
            self.assertEqual(st, 200, body)
        self.d.stop()
        self.assertEqual(verify(self.d.db).returncode, 0)

    def tearDown(self):
        self.d.cleanup()

    def refused(self, expected, args=()):
        """consentd exits 1 at start, its error naming `expected`; verify-ledger
        (without args) says the same."""
        r = subprocess.run([CONSENTD, "--config", self.d.config, *args], capture_output=True, text=True,
                           timeout=PATIENCE * 2)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("refusing to start: the ledger", r.stderr)
        self.assertIn(expected, r.stderr)
        v = verify(self.d.db)
        self.assertEqual(v.returncode, 1, v.stdout)
        self.assertIn("INCONSISTENT: ", v.stderr)
        self.assertIn(expected, v.stderr)
        return r.stderr

    def consents(self, subscriber):
        st, _, s = self.d.request("GET", "/v1/subscribers/" + subscriber, token="auditor")
        self.assertEqual(st, 200, s)
        return sorted(c["purpose"] for c in s["consents"])

    def test_planted_consent_row_refused_then_rebuilt(self):
        edit(self.d.db, "INSERT INTO consents (subscriber, purpose, seq, time, source, notice_version, credential) "
                        "VALUES ('mallory', 'advertising', 1, '2024-05-01T00:00:00.000Z', 'portal', '2024-05', "
                        "'portal')")
        err = self.refused("consents row ('mallory', 'advertising') exists but the events leave that purpose "
                           "not granted")
        self.assertIn("--rebuild-derived-tables", err)
        # The repair: the row goes, alice's real consent stays, the ledger verifies.
        self.d.args = ["--rebuild-derived-tables"]
        self.d.start()
        self.assertIn("rebuilt the consents and bindings tables", self.d.read_log())
        st, _, body = self.d.request("GET", "/v1/subscribers/mallory", token="auditor")
        self.assertEqual((st, body["error"]["code"]), (404, "unknown_subscriber"))
        self.assertEqual(self.consents("alice"), ["advertising"])
        self.d.stop()
        self.assertEqual(verify(self.d.db).returncode, 0)

    def test_removed_and_altered_rows_refused_then_rebuilt(self):
        # A revoke nobody recorded: the consent would silently stop being enforced.
        edit(self.d.db, "DELETE FROM consents WHERE subscriber = 'alice'")
        self.refused("event 1 grants 'advertising' to 'alice' and nothing revokes it, but the consents table "
                     "has no row for it")
        # A binding moved to someone else.
        edit(self.d.db, "UPDATE bindings SET subscriber = 'mallory' WHERE address = '100.64.0.7'")
        self.d.args = ["--rebuild-derived-tables"]
        self.d.start()
        self.assertEqual(self.consents("alice"), ["advertising"])
        st, _, b = self.d.request("GET", "/v1/subscribers/alice", token="auditor")
        self.assertEqual([x["address"] for x in b["bindings"]], ["100.64.0.7"], b)
        self.d.stop()
        self.assertEqual(verify(self.d.db).returncode, 0)

    def test_planted_trigger_refused_even_with_rebuild(self):
        # The attack of issue 17: revokes answered 200 while the row stays.
        edit(self.d.db, "CREATE TRIGGER keep_consents AFTER DELETE ON consents BEGIN "
                        "INSERT INTO consents VALUES (old.subscriber, old.purpose, old.seq, old.time, old.source, "
                        "old.notice_version, old.credential); END")
        expected = "trigger 'keep_consents' on table 'consents', which consentd did not create"
        self.refused(expected)
        self.refused(expected, ["--rebuild-derived-tables"])  # not a derived table: never repaired
        edit(self.d.db, "DROP TRIGGER keep_consents")
        self.d.args = []
        self.d.start()
        st, _, body = self.d.request("DELETE", "/v1/subscribers/alice/consents/advertising", {"source": "portal"})
        self.assertEqual(st, 200, body)
        self.assertEqual(self.consents("alice"), [])
        self.d.stop()
        self.assertEqual(verify(self.d.db).returncode, 0)

    def test_other_schema_objects(self):
        cases = [
            ("CREATE VIEW everyone AS SELECT * FROM consents", "DROP VIEW everyone",
             "view 'everyone' on table 'everyone', which consentd did not create"),
            ("CREATE INDEX consents_by_seq ON consents (seq)", "DROP INDEX consents_by_seq",
             "index 'consents_by_seq' on table 'consents', which consentd did not create"),
            ("CREATE TABLE notes (x)", "DROP TABLE notes", "table 'notes', which consentd did not create"),
            # One of ours, dropped: deletes of events would no longer be refused.
            ("DROP TRIGGER events_append_only_delete",
             "CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events\n"
             "BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END",
             "the ledger has no trigger 'events_append_only_delete' on table 'events'"),
            # One of ours, redefined under its name.
            ("DROP TRIGGER policies_append_only_update; CREATE TRIGGER policies_append_only_update "
             "BEFORE UPDATE ON policies BEGIN SELECT 1; END",
             "DROP TRIGGER policies_append_only_update; CREATE TRIGGER policies_append_only_update "
             "BEFORE UPDATE ON policies\nBEGIN SELECT RAISE(ABORT, 'the policies table is append-only'); END",
             "trigger 'policies_append_only_update' on table 'policies' is not the trigger consentd created"),
        ]
        for plant, undo, expected in cases:
            with self.subTest(plant=plant):
                edit(self.d.db, plant)
                v = verify(self.d.db)
                self.assertEqual(v.returncode, 1, v.stdout)
                self.assertIn(expected, v.stderr)
                edit(self.d.db, undo)
                v = verify(self.d.db)
                self.assertEqual(v.returncode, 0, v.stderr)
        # SQLite's own statistics are not ours, but harmless: allowed.
        edit(self.d.db, "ANALYZE")
        self.assertEqual(verify(self.d.db).returncode, 0)
        self.d.start()
        self.assertEqual(self.consents("alice"), ["advertising"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
