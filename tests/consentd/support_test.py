#!/usr/bin/python3
"""Answering a support call (docs/consentd.md, docs/optgatectl.md): since when
a subscriber has agreed (the first grant of the current run), who held an
address at a time (GET /v1/bindings/{address}?at=), optgatectl show and
binding as tables in local time, JSON numbers in plain decimals, API tokens
reloaded with the policy, --check-config reporting every error, and the
import example of docs/consentd.md giving what the doc says.
"""
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon import BACKEND, CONSENTD, PATIENCE, TOKENS, Daemon, sha256_hex  # noqa: E402

GRANT = {"source": "portal", "notice_version": "2024-05"}
# A JSON number in scientific notation (not inside a string: hashes are hex).
SCIENTIFIC = re.compile(r'[:\[,]\s*-?[0-9.]+[eE][-+]?[0-9]')
# A zone without daylight saving that no machine is likely to run in, in
# POSIX form (no tzdata needed): UTC+05:30, abbreviated "XST".
TZ_ENV = {"TZ": "XST-5:30"}
TZ_OFFSET = datetime.timedelta(hours=5, minutes=30)


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def local_text(ledger_time):
    """What optgatectl should print for a ledger time under TZ_ENV."""
    return (parse_time(ledger_time) + TZ_OFFSET).strftime("%Y-%m-%d %H:%M:%S") + " XST"


def wait_until(what, condition):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class SupportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()

    @classmethod
    def tearDownClass(cls):
        alive = cls.d.alive()
        cls.d.cleanup()
        assert alive, "consentd died during the tests"

    def ok(self, method, path, body=None, token="portal"):
        st, _, j = self.d.request(method, path, body, token=token)
        self.assertEqual(st, 200, j)
        return j

    def step(self):
        # Event times have milliseconds: keep consecutive commits apart so
        # that a time names one of them.
        time.sleep(0.01)

    def test_since_when_a_consent_has_held(self):
        sub = "/v1/subscribers/since-1"
        self.ok("PUT", sub + "/consents/advertising", GRANT)
        first = self.ok("GET", sub)["consents"][0]
        self.assertEqual((first["since_seq"], first["since"]), (first["seq"], first["time"]))
        self.step()
        # Agreeing again (a new notice) is a new grant, not a new run.
        self.ok("PUT", sub + "/consents/advertising", {"source": "call-centre", "notice_version": "2024-09"})
        self.ok("PUT", sub + "/consents/analytics", GRANT)
        consents = {c["purpose"]: c for c in self.ok("GET", sub)["consents"]}
        ad = consents["advertising"]
        self.assertGreater(ad["seq"], first["seq"])
        self.assertEqual((ad["notice_version"], ad["source"]), ("2024-09", "call-centre"))
        self.assertEqual((ad["since_seq"], ad["since"]), (first["seq"], first["time"]))
        self.assertEqual(consents["analytics"]["since_seq"], consents["analytics"]["seq"])
        # A revoke ends the run; the next grant starts a new one.
        self.ok("DELETE", sub + "/consents/advertising", {"source": "portal"})
        self.step()
        again = self.ok("PUT", sub + "/consents/advertising", GRANT)
        ad = {c["purpose"]: c for c in self.ok("GET", sub)["consents"]}["advertising"]
        self.assertEqual((ad["since_seq"], ad["since"]), (again["seq"], again["time"]))
        self.assertNotEqual(ad["since"], first["time"])

    def test_who_held_an_address_at_a_time(self):
        addr = "100.64.7.7"
        path = "/v1/bindings/" + addr
        never = self.ok("GET", path, token="auditor")
        self.assertEqual((never["subscriber"], never["since"], never["until"], never["at"]), (None, None, None, None))
        alice = self.ok("PUT", path, {"subscriber": "alice", "source": "radius"})
        self.step()
        moved = self.ok("PUT", path, {"subscriber": "bob", "source": "radius"})  # unbind alice, bind bob
        self.step()
        gone = self.ok("DELETE", path, {"subscriber": "bob"})

        now = self.ok("GET", path, token="auditor")
        self.assertIsNone(now["subscriber"])
        self.assertEqual((now["since"]["seq"], now["since"]["action"], now["since"]["subscriber"]),
                         (gone["seq"], "unbind", "bob"))
        self.assertIsNone(now["until"])

        # At alice's bind (inclusive): alice, until the move's unbind of her.
        then = self.ok("GET", path + "?at=" + alice["time"], token="auditor")
        self.assertEqual(then["subscriber"], "alice")
        self.assertEqual((then["since"]["seq"], then["since"]["source"]), (alice["seq"], "radius"))
        self.assertEqual((then["until"]["action"], then["until"]["subscriber"]), ("unbind", "alice"))
        self.assertLess(then["until"]["seq"], moved["seq"])
        self.assertEqual(then["at"], alice["time"])

        # The same instant written with an offset, '+' encoded or not.
        t = parse_time(alice["time"]) + datetime.timedelta(hours=2)
        offset = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+02:00"
        for query in (offset.replace("+", "%2B"), offset):
            j = self.ok("GET", path + "?at=" + query, token="auditor")
            self.assertEqual((j["subscriber"], j["at"]), ("alice", alice["time"]), query)

        # While bob held it.
        j = self.ok("GET", path + "?at=" + moved["time"], token="auditor")
        self.assertEqual((j["subscriber"], j["since"]["seq"], j["until"]["seq"]), ("bob", moved["seq"], gone["seq"]))

        # Before anything: nobody, until alice's bind.
        before = parse_time(alice["time"]) - datetime.timedelta(seconds=1)
        j = self.ok("GET", path + "?at=" + before.strftime("%Y-%m-%dT%H:%M:%SZ"), token="auditor")
        self.assertEqual((j["subscriber"], j["since"], j["until"]["seq"]), (None, None, alice["seq"]))

    def test_an_ipv6_address_is_looked_up_in_its_prefix(self):
        bound = self.ok("PUT", "/v1/bindings/2001:db8:1000:77::%2F64", {"subscriber": "carol"})
        j = self.ok("GET", "/v1/bindings/2001:db8:1000:77::abcd", token="auditor")
        self.assertEqual((j["address"], j["subscriber"], j["since"]["seq"]),
                         ("2001:db8:1000:77::/64", "carol", bound["seq"]))

    def test_bad_lookups_are_400_with_a_reason(self):
        for path, code, why in (
                ("/v1/bindings/100.64.300.1", "invalid_address", "100.64.300.1"),
                ("/v1/bindings/100.64.0.0%2F24", "invalid_address", "IPv4 prefix"),
                ("/v1/bindings/100.64.0.1?at=yesterday", "invalid_parameter", "RFC 3339"),
                ("/v1/bindings/100.64.0.1?at=2024-05-01T12:00:00", "invalid_parameter", "with a zone"),
                ("/v1/bindings/100.64.0.1?at=2024-02-30T12:00:00Z", "invalid_parameter", "not a date and time that exists"),
                ("/v1/bindings/100.64.0.1?at=2024-05-01T25:00:00Z", "invalid_parameter", "that exists"),
                ("/v1/bindings/100.64.0.1?at=2024-05-01T12:00:00%2B24:00", "invalid_parameter", "offset"),
                ("/v1/bindings/100.64.0.1?when=now", "unknown_parameter", "when")):
            st, _, j = self.d.request("GET", path, token="auditor")
            self.assertEqual((st, j["error"]["code"]), (400, code), (path, j))
            self.assertIn(why, j["error"]["message"], path)
        st, _, _ = self.d.request("GET", "/v1/bindings/100.64.0.1", token=None)
        self.assertEqual(st, 401)

    def test_numbers_are_plain_decimals(self):
        # No data plane: the wait ends at once, latency_ms 0 (Boost.JSON
        # alone writes 0E0, and 0.203187 as 2.03187E-1).
        conn = self.d.connect()
        try:
            conn.request("PUT", "/v1/subscribers/num-1/consents/analytics?wait=enforced", body=json.dumps(GRANT),
                         headers={"Authorization": "Bearer " + TOKENS["portal"][0],
                                  "Content-Type": "application/json"})
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        self.assertIn('"latency_ms":', text)
        self.assertIsNone(SCIENTIFIC.search(text), text)
        self.assertEqual(json.loads(text)["enforcement"]["latency_ms"], 0)
        r = self.d.ctl("grant", "num-1", "advertising", "--source", "portal", "--notice-version", "v9", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"latency_ms": ', r.stdout)
        self.assertIsNone(SCIENTIFIC.search(r.stdout), r.stdout)

    def test_show_prints_tables_in_local_time(self):
        first = self.ok("PUT", "/v1/subscribers/show-1/consents/advertising", GRANT)
        self.step()
        latest = self.ok("PUT", "/v1/subscribers/show-1/consents/advertising",
                         {"source": "call-centre", "notice_version": "2024-09"})
        bound = self.ok("PUT", "/v1/bindings/100.64.8.8", {"subscriber": "show-1", "source": "radius"})
        r = self.d.ctl("show", "show-1", token="auditor", env=TZ_ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn("OPTED IN SINCE", out)
        row = next(line for line in out.splitlines() if line.strip().startswith("advertising"))
        # Since the first grant, last granted by the second, in local time.
        self.assertIn(local_text(first["time"]) + "  " + local_text(latest["time"]), row)
        self.assertIn("2024-09", row)
        self.assertIn("call-centre", row)
        addr = next(line for line in out.splitlines() if "100.64.8.8" in line and "bind" not in line)
        self.assertIn(local_text(bound["time"]), addr)
        self.assertNotRegex(out, r"\d{4}-\d\d-\d\dT")  # no raw ledger times
        # --utc: the ledger's times, readable.
        r = self.d.ctl("show", "show-1", "--utc", token="auditor", env=TZ_ENV)
        self.assertIn(first["time"][:10] + " " + first["time"][11:19] + " UTC", r.stdout)
        # --json: consentd's answer.
        r = self.d.ctl("show", "show-1", "--json", token="auditor", env=TZ_ENV)
        j = json.loads(r.stdout)
        self.assertEqual(j["consents"][0]["since"], first["time"])
        # Errors as before.
        r = self.d.ctl("show", "nobody-at-all", token="auditor")
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 404: unknown_subscriber", r.stderr)

    def test_cli_binding_at_a_local_time(self):
        dave = self.ok("PUT", "/v1/bindings/100.64.9.9", {"subscriber": "dave", "source": "dhcp"})
        self.step()
        self.ok("PUT", "/v1/bindings/100.64.9.9", {"subscriber": "erin", "source": "dhcp"})
        # An RFC 3339 time, shown back in local time; then a local time.
        r = self.d.ctl("binding", "100.64.9.9", "--at", dave["time"], token="auditor", env=TZ_ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("100.64.9.9 at " + local_text(dave["time"]) + ": bound to subscriber dave", r.stdout)
        later = parse_time(dave["time"]) + TZ_OFFSET + datetime.timedelta(hours=1)
        r = self.d.ctl("binding", "100.64.9.9", "--at", later.strftime("%Y-%m-%d %H:%M"), token="auditor",
                       env=TZ_ENV)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(": bound to subscriber erin", r.stdout)
        self.assertIn(later.strftime("%Y-%m-%d %H:%M:00 XST"), r.stdout)
        r = self.d.ctl("binding", "100.64.9.9", "--json", token="auditor")
        self.assertEqual(json.loads(r.stdout)["subscriber"], "erin")
        r = self.d.ctl("binding", "100.64.9.9", "--at", "2024-02-30 10:00", token="auditor")
        self.assertEqual(r.returncode, 2)
        self.assertIn("is not a time", r.stderr)

    def test_help_lists_unbind_source_and_binding(self):
        r = self.d.ctl("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("unbind ADDRESS [--subscriber SUB] [--source S]", r.stdout)
        self.assertIn("binding ADDRESS [--at TIME]", r.stdout)

    def test_the_documented_import_example(self):
        with open(os.path.join(HERE, "..", "..", "docs", "consentd.md")) as f:
            doc = f.read()
        records = re.search(r"\*\*NDJSON\*\*.*?\n```\n(.*?)```", doc, re.S).group(1)
        answer = json.loads(re.search(r'\n(\{"records":.*\})\n', doc).group(1))
        d = Daemon()
        try:
            st, _, j = d.request("POST", "/v1/import", records, token="ops",
                                 headers={"Content-Type": "application/x-ndjson"})
            self.assertEqual(st, 200, j)
            self.assertEqual((j["records"], j["events"]), (answer["records"], answer["events"]))
            self.assertEqual(j["last_seq"] - j["first_seq"], answer["last_seq"] - answer["first_seq"])
        finally:
            d.cleanup()


def write_tokens(d, names):
    """Rewrites the daemon's config with only these of TOKENS (and any extra
    (name, token, role) given as tuples)."""
    with open(d.config) as f:
        head = f.read().split("tokens:\n")[0]
    lines = []
    for n in names:
        tok, role = (n[1], n[2]) if isinstance(n, tuple) else TOKENS[n]
        name = n[0] if isinstance(n, tuple) else n
        lines.append(f"  - {{name: {name}, role: {role}, sha256: {sha256_hex(tok)}}}\n")
    with open(d.config, "w") as f:
        f.write(head + "tokens:\n" + "".join(lines))


class TokenReloadTest(unittest.TestCase):
    NEW = ("newbie", "newbie-token-0123456789", "read")

    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.cleanup()

    def status(self, token, conn=None):
        return self.d.request("GET", "/v1/purposes", token=token, conn=conn)[0]

    def test_reload_adds_and_removes_tokens(self):
        d = self.d
        keep = d.connect()  # a keep-alive connection that used the token before
        self.assertEqual(self.status("auditor", conn=keep), 200)
        self.assertEqual(self.status(self.NEW[1]), 401)
        write_tokens(d, ["portal", "ops", self.NEW])
        st, _, j = d.request("POST", "/v1/policy/reload", token="ops")
        self.assertEqual(st, 200, j)
        self.assertEqual(j["tokens"], 3)
        self.assertEqual(self.status(self.NEW[1]), 200)
        self.assertEqual(self.status("auditor"), 401)
        self.assertEqual(self.status("auditor", conn=keep), 401)
        keep.close()
        self.assertIn("API tokens reloaded from", d.read_log())
        # A config that does not load changes nothing, and says which file.
        with open(d.config, "a") as f:
            f.write("surprise: 1\n")
        st, _, j = d.request("POST", "/v1/policy/reload", token="ops")
        self.assertEqual((st, j["error"]["code"]), (422, "invalid_policy"), j)
        self.assertIn("consentd.yaml", j["error"]["message"])
        self.assertTrue(any("unknown key 'surprise'" in x for x in j["error"]["details"]), j)
        self.assertEqual(self.status(self.NEW[1]), 200)
        # SIGHUP: the same reload.
        write_tokens(d, ["portal", "ops", "auditor"])
        d.proc.send_signal(signal.SIGHUP)
        wait_until("SIGHUP to restore the auditor token", lambda: self.status("auditor") == 200)
        self.assertEqual(self.status(self.NEW[1]), 401)

    def test_an_invalid_policy_keeps_the_old_tokens(self):
        d = self.d
        write_tokens(d, ["portal", "ops", self.NEW])
        with open(d.policy, "a") as f:
            f.write("surprise: 1\n")
        st, _, j = d.request("POST", "/v1/policy/reload", token="ops")
        self.assertEqual(st, 422, j)
        self.assertEqual(self.status("auditor"), 200)
        self.assertEqual(self.status(self.NEW[1]), 401)


class CheckConfigTest(unittest.TestCase):
    def test_every_error_is_printed(self):
        d = Daemon()
        try:
            with open(d.config) as f:
                text = f.read()
            with open(d.policy, "a") as f:
                f.write("surprise: 1\n")
            bad = os.path.join(d.dir, "bad.yaml")
            if BACKEND == "postgresql":
                bad_text, problem = text.replace("dbname=", "dbname=no_such_"), 'database "no_such_'
            else:
                bad_text, problem = text.replace("database: ledger.db", "database: no-such-dir/ledger.db"), \
                    "the database directory"
            self.assertNotEqual(bad_text, text)
            with open(bad, "w") as f:
                f.write(bad_text)
            r = subprocess.run([CONSENTD, "--check-config", bad], capture_output=True, text=True, timeout=PATIENCE)
            self.assertEqual(r.returncode, 1)
            self.assertIn("unknown key 'surprise'", r.stderr)  # the policy's error...
            self.assertIn(problem, r.stderr)  # ...and the database's
            self.assertNotIn(": ok:", r.stdout)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
