#!/usr/bin/python3
"""GET /v1/subscribers/{id}/disclosures and `optgatectl disclosures`: a real
consentd whose ledger gets bindings over the API and disclosure reports
through DisclosureStore (the disclosure-seed helper, writing to the same
database while consentd runs). Checks attribution through the binding
history as the API shows it, the answer's shape, every class of bad input
(refused, nothing changed), and the CLI's table.
"""
import datetime
import json
import os
import sqlite3
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import Daemon  # noqa: E402

SEED = os.environ["DISCLOSURE_SEED"]
UIDH = "unique identifier header"
ECS = "EDNS client subnet"


def unix_ms(rfc3339):
    t = datetime.datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp() * 1000)


def now_ms():
    return int(time.time() * 1000)


def wait_past(ms):
    """Until the wall clock is past `ms` (event-driven: polls the clock)."""
    deadline = time.time() + 30
    while now_ms() <= ms:
        assert time.time() < deadline
        time.sleep(0.01)


def entry(key, destination, identifier, passed, stripped):
    return {"key": key, "destination": destination, "identifier": identifier, "passed": passed,
            "stripped": stripped}


class DisclosuresTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()
        cls.seq = 0

    @classmethod
    def tearDownClass(cls):
        alive = cls.d.alive()
        cls.d.cleanup()
        assert alive, "consentd died during the tests"

    def seed(self, start, end, entries, seq=None):
        if seq is None:
            DisclosuresTest.seq += 1
            seq = DisclosuresTest.seq
        line = json.dumps({"dataplane": "edge-1", "reporter": 42, "seq": seq, "start_ms": start, "end_ms": end,
                           "entries": entries})
        r = subprocess.run([SEED, self.d.db, self.d.policy], input=line + "\n", capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)

    def bind(self, address, subscriber):
        st, _, j = self.d.request("PUT", "/v1/bindings/" + address, {"subscriber": subscriber, "source": "radius"})
        self.assertEqual(st, 200, j)
        return unix_ms(j["time"])

    def disclosures(self, sub, query=""):
        st, _, j = self.d.request("GET", f"/v1/subscribers/{sub}/disclosures{query}", token="auditor")
        self.assertEqual(st, 200, j)
        return j

    def counts(self, body):
        """(day, collector, purpose, identifier) -> (passed, stripped)"""
        out = {}
        for day in body["days"]:
            for c in day["collectors"]:
                for i in c["identifiers"]:
                    out[(day["day"], c["name"], c["purpose"], i["name"])] = (i["passed"], i["stripped"])
        return out

    def test_attribution_through_binding_history(self):
        self.bind("100.64.20.1", "disc-a")
        t0 = self.bind("2001:db8:1000:20::/64", "disc-a")
        wait_past(t0 + 20)
        r1_end = now_ms()
        self.seed(t0 + 10, r1_end, [entry("100.64.20.1", "example-adnet", UIDH, 3, 1),
                                    entry("2001:db8:1000:20::1", "web-analytics", ECS, 0, 2),
                                    entry("100.64.20.1", "billing", UIDH, 1, 0)])
        # The address moves to disc-b; a later report's counts are disc-b's.
        wait_past(r1_end + 20)
        t1 = self.bind("100.64.20.1", "disc-b")
        wait_past(t1 + 20)
        self.seed(t1 + 10, now_ms(), [entry("100.64.20.1", "example-adnet", UIDH, 7, 0)])
        # The same report again (a resend after a lost ack): not counted twice.
        self.seed(t1 + 10, now_ms(), [entry("100.64.20.1", "example-adnet", UIDH, 7, 0)], seq=DisclosuresTest.seq)

        day = datetime.datetime.fromtimestamp(t0 / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")
        day_b = datetime.datetime.fromtimestamp((t1 + 10) / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")
        a = self.disclosures("disc-a")
        self.assertEqual(self.counts(a), {
            (day, "example-adnet", "advertising", UIDH): (3, 1),
            (day, "web-analytics", "analytics", ECS): (0, 2),
            (day, "billing", "(exempt)", UIDH): (1, 0),
        })
        self.assertEqual((a["passed"], a["stripped"]), (4, 3))
        adnet = [c for c in a["days"][0]["collectors"] if c["name"] == "example-adnet"][0]
        self.assertEqual((adnet["kind"], adnet["description"]), ("collector", "Example Ad Network Ltd."))
        billing = [c for c in a["days"][0]["collectors"] if c["name"] == "billing"][0]
        self.assertEqual((billing["kind"], billing["description"]),
                         ("exemption", "Carrier billing and fraud prevention."))
        b = self.disclosures("disc-b")
        self.assertEqual(self.counts(b), {(day_b, "example-adnet", "advertising", UIDH): (7, 0)})

        # Default range: the 30 days up to today.
        today = datetime.datetime.now(datetime.timezone.utc).date()
        self.assertEqual(a["to"], today.isoformat())
        self.assertEqual(a["from"], (today - datetime.timedelta(days=29)).isoformat())
        # A range that excludes the day: nothing.
        empty = self.disclosures("disc-a", "?from=2020-01-01&to=2020-01-31")
        self.assertEqual((empty["days"], empty["passed"], empty["from"], empty["to"]),
                         ([], 0, "2020-01-01", "2020-01-31"))
        # `to` alone: the 30 days before it.
        only_to = self.disclosures("disc-a", "?to=" + day)
        self.assertEqual(self.counts(only_to), self.counts(a))

        # The CLI prints the same numbers as a table.
        r = self.d.ctl("disclosures", "disc-a", token="auditor")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [line.split() for line in r.stdout.splitlines()]
        self.assertIn([day, "example-adnet", "advertising", *UIDH.split(), "3", "1"], rows)
        self.assertIn([day, "web-analytics", "analytics", *ECS.split(), "0", "2"], rows)
        self.assertIn(["total", "4", "3"], rows)
        self.assertIn("example-adnet: Example Ad Network Ltd.", r.stdout)
        r = self.d.ctl("disclosures", "disc-a", "--json", "--from", day, "--to", day, token="auditor")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.counts(json.loads(r.stdout)), self.counts(a))
        r = self.d.ctl("disclosures", "disc-a", "--from", "2020-01-01", "--to", "2020-01-02", token="auditor")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("none recorded", r.stdout)

        # consentd killed and started again over the same database (whose
        # disclosure tables now exist): the same answer.
        self.d.kill()
        self.d.start()
        self.assertEqual(self.counts(self.disclosures("disc-a")), self.counts(a))
        self.assertEqual(self.counts(self.disclosures("disc-b")), self.counts(b))

    def test_rebinding_inside_a_report_gives_it_to_nobody(self):
        t0 = self.bind("100.64.21.1", "disc-c")
        wait_past(t0 + 20)
        t1 = self.bind("100.64.21.1", "disc-d")
        wait_past(t1 + 20)
        self.seed(t0 + 10, now_ms(), [entry("100.64.21.1", "example-adnet", UIDH, 5, 5)])
        self.assertEqual(self.disclosures("disc-c")["days"], [])
        self.assertEqual(self.disclosures("disc-d")["days"], [])
        # Stored for operators, as ambiguous (the seeder's process counted
        # the metric, not consentd's: read the table).
        db = sqlite3.connect(f"file:{self.d.db}?mode=ro", uri=True)
        rows = db.execute("SELECT reason, passed, stripped FROM disclosures_unattributed "
                          "WHERE destination = 'example-adnet' AND passed = 5").fetchall()
        db.close()
        self.assertEqual(rows, [("ambiguous", 5, 5)])

    def test_bad_input_is_refused(self):
        self.bind("100.64.22.1", "disc-e")
        head = self.d.metric("consentd_ledger_head_seq")
        for query, code in [
            ("?from=2024-13-01", "invalid_parameter"),
            ("?from=2023-02-29", "invalid_parameter"),
            ("?to=yesterday", "invalid_parameter"),
            ("?from=2024-05-02&to=2024-05-01", "invalid_parameter"),   # reversed
            ("?from=2023-01-01&to=2024-05-01", "invalid_parameter"),   # over 366 days
            ("?from=2024-05-01&from=2024-05-02", "duplicate_parameter"),
            ("?since=2024-05-01", "unknown_parameter"),
        ]:
            st, _, j = self.d.request("GET", "/v1/subscribers/disc-e/disclosures" + query, token="auditor")
            self.assertEqual((st, j["error"]["code"]), (400, code), query)
            self.assertTrue(j["error"]["message"])
        st, _, j = self.d.request("GET", "/v1/subscribers/nobody-here/disclosures", token="auditor")
        self.assertEqual((st, j["error"]["code"]), (404, "unknown_subscriber"))
        st, _, j = self.d.request("GET", "/v1/subscribers/bad%20id/disclosures", token="auditor")
        self.assertEqual((st, j["error"]["code"]), (400, "invalid_subscriber_id"))
        st, _, j = self.d.request("GET", "/v1/subscribers/disc-e/disclosures", token=None)
        self.assertEqual(st, 401)
        st, h, j = self.d.request("PUT", "/v1/subscribers/disc-e/disclosures", {}, token="ops")
        self.assertEqual((st, j["error"]["code"], h.get("allow")), (405, "method_not_allowed", "GET"))
        self.assertEqual(self.d.metric("consentd_ledger_head_seq"), head)
        # 366 days is the limit, not over it.
        self.assertEqual(self.disclosures("disc-e", "?from=2024-01-01&to=2024-12-31")["days"], [])
        r = self.d.ctl("disclosures", "disc-e", "--from", "2024-05-02", "--to", "2024-05-01", token="auditor")
        self.assertEqual(r.returncode, 1)
        self.assertIn("invalid_parameter", r.stderr)
        r = self.d.ctl("disclosures", token="auditor")
        self.assertEqual(r.returncode, 2)

    def test_metrics(self):
        _, _, text = self.d.request("GET", "/metrics", token="auditor")
        for line in ('consentd_disclosure_reports_total{result="stored"}',
                     'consentd_disclosure_entries_total{attribution="unbound"}',
                     "consentd_disclosure_rows_pruned_total"):
            self.assertIn(line + " ", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
