#!/usr/bin/python3
"""Signed checkpoints (issue 17 item 10, docs/consentd.md "Signed
checkpoints"): consentd signs its head every N events into an append-only
file and serves the latest; optgatectl verify-ledger --checkpoints passes on
an untouched ledger and detects a truncated ledger, a rewritten one (every
hash recomputed), an altered checkpoint line and a foreign key; consentd
refuses to start on the truncated and the rewritten ledger. A data plane
(optgate-replay --control) receives the latest checkpoint, verifies it with
the public key, and its copy alone lets verify-ledger detect a ledger
truncated after it was sent, with consentd's own file rewritten to match.
"""
import json
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import struct
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import CONSENTD, OPTGATECTL, PATIENCE, Daemon  # noqa: E402

REPLAY = os.environ["OPTGATE_REPLAY"]
GRANT = {"source": "portal", "notice_version": "2024-05"}
EVENTS = 12


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def F(v):
    if v is None:
        return b"\x00"
    b = v.encode()
    return b"\x01" + len(b).to_bytes(4, "big") + b


def with_events_writable(db, fn):
    """Runs fn(connection) with the append-only triggers out of the way, then
    puts them back exactly (the schema check would name a missing one)."""
    c = sqlite3.connect(db)
    try:
        triggers = [r[0] for r in c.execute(
            "SELECT sql FROM sqlite_schema WHERE name LIKE 'events_append_only_%'")]
        c.execute("DROP TRIGGER events_append_only_update")
        c.execute("DROP TRIGGER events_append_only_delete")
        fn(c)
        for t in triggers:
            c.execute(t)
        c.commit()
    finally:
        c.close()


def rechain(c):
    """Recomputes every hash (docs/consentd.md, "Hash chain"): a rewrite the
    chain alone cannot detect."""
    prev = "0" * 64
    rows = c.execute("SELECT seq, time, subscriber, action, purpose, address, source, notice_version, credential "
                     "FROM events ORDER BY seq").fetchall()
    for row in rows:
        enc = b"optgate-ledger-v1\n" + b"".join(F(str(x) if i == 0 else x) for i, x in enumerate(row))
        h = hashlib.sha256(bytes.fromhex(prev) + enc).hexdigest()
        c.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, row[0]))
        prev = h


class CheckpointTest(unittest.TestCase):
    def setUp(self):
        # The key must exist before consentd starts with it: a first start
        # only makes the directory and the ledger.
        d = Daemon()
        d.stop()
        self.key = os.path.join(d.dir, "key.pem")
        self.pub = os.path.join(d.dir, "pub.pem")
        self.file = os.path.join(d.dir, "checkpoints")
        openssl("genpkey", "-algorithm", "ed25519", "-out", self.key)
        openssl("pkey", "-in", self.key, "-pubout", "-out", self.pub)
        with open(d.config, "a") as f:
            f.write("ledger: {checkpoints: {key: key.pem, file: checkpoints, every_events: 5}}\n")
        self.d = d
        d.start()
        for i in range(EVENTS):
            st, _, body = d.request("PUT", f"/v1/subscribers/s{i}/consents/advertising", GRANT)
            self.assertEqual(st, 200, body)
        # Every 5 events: the checkpoint of event 10 (event-driven, generous).
        deadline = time.monotonic() + PATIENCE
        while True:
            st, _, cp = d.request("GET", "/v1/ledger/checkpoint", token="auditor")
            if st == 200 and cp["seq"] >= 10:
                break
            self.assertLess(time.monotonic(), deadline, cp)
            time.sleep(0.05)
        self.served = cp
        d.stop()  # signs the head, event 12

    def tearDown(self):
        self.d.cleanup()

    def verify(self, db=None, *extra):
        return subprocess.run([OPTGATECTL, "verify-ledger", db or self.d.db, "--checkpoints", self.file, *extra],
                              capture_output=True, text=True, timeout=PATIENCE * 2)

    def refused(self, expected):
        r = subprocess.run([CONSENTD, "--config", self.d.config, "--rebuild-derived-tables"], capture_output=True,
                           text=True, timeout=PATIENCE * 2)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("refusing to start: checkpoints: ", r.stderr)
        self.assertIn(expected, r.stderr)

    def test_untouched_ledger_passes_and_the_api_serves_the_file_line(self):
        with open(self.file) as f:
            lines = f.read().splitlines()
        self.assertTrue(lines[0].startswith("optgate-checkpoint-key-v1 key="), lines)
        records = [line for line in lines if line.startswith("optgate-checkpoint-v1 ")]
        self.assertEqual([int(r.split()[1][4:]) for r in records], [5, 10, 12])
        self.assertIn(self.served["line"], records)
        self.assertEqual(self.served["line"].split()[1], f"seq={self.served['seq']}")
        r = self.verify(None, "--public-key", self.pub)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ok: 3 checkpoints of", r.stdout)
        self.assertIn("the latest of event 12", r.stdout)
        r = self.verify()  # the key line's key
        self.assertEqual(r.returncode, 0, r.stderr)
        # --check-config names the key; an unusable key is refused there and at start.
        key_id = open(self.file).readline().split()[1][4:]
        r = subprocess.run([CONSENTD, "--check-config", self.d.config], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"checkpoints: key {key_id}, to {self.file} every 5 events or 60s", r.stdout)
        shutil.copy(self.key, self.key + ".good")
        shutil.copy(self.pub, self.key)  # a public key cannot sign
        r = subprocess.run([CONSENTD, "--check-config", self.d.config], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("ledger.checkpoints.key: " + self.key + " holds no private key in PEM", r.stderr)
        shutil.copy(self.key + ".good", self.key)
        # A restart over the same files starts and carries on.
        self.d.start()
        st, _, cp = self.d.request("GET", "/v1/ledger/checkpoint", token="auditor")
        self.assertEqual((st, cp["seq"]), (200, 12))

    def test_altered_line_and_foreign_key_fail(self):
        with open(self.file) as f:
            text = f.read()
        # One event number changed: its signature no longer verifies.
        with open(self.file, "w") as f:
            f.write(text.replace("seq=10 ", "seq=11 "))
        r = self.verify(None, "--public-key", self.pub)
        self.assertEqual(r.returncode, 1)
        self.assertIn("the signature of the checkpoint of event 11 does not verify", r.stderr)
        with open(self.file, "w") as f:
            f.write(text)
        # Another key than the one pinned.
        other = os.path.join(self.d.dir, "other.pem")
        openssl("genpkey", "-algorithm", "ed25519", "-out", other)
        r = self.verify(None, "--public-key", other)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not the given public key", r.stderr)

    def test_truncated_ledger_detected(self):
        with_events_writable(self.d.db, lambda c: c.execute("DELETE FROM events WHERE seq > 8"))
        r = self.verify(None, "--public-key", self.pub)
        self.assertEqual(r.returncode, 1)
        self.assertIn("TRUNCATED: the ledger ends at event 8, but event 10 was signed", r.stderr)
        # Even with the derived tables made to agree, consentd refuses it.
        self.refused("the ledger ends at event 8, but")
        r = self.verify(None, "--public-key", self.pub)
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("INCONSISTENT", r.stderr)  # the chain and tables agree now: only the checkpoint tells
        self.assertIn("TRUNCATED", r.stderr)

    def test_rewritten_ledger_detected(self):
        def rewrite(c):
            c.execute("UPDATE events SET subscriber = 'mallory' WHERE seq = 3")
            rechain(c)
        with_events_writable(self.d.db, rewrite)
        self.refused("the ledger was rewritten")
        r = self.verify(None, "--public-key", self.pub)
        self.assertEqual(r.returncode, 1)
        self.assertNotIn("INCONSISTENT", r.stderr)
        self.assertIn("REWRITTEN: event 5 has hash", r.stderr)

    def test_a_data_plane_keeps_the_latest_checkpoint_which_verify_ledger_checks(self):
        self.d.start()  # the file's latest, event 12, goes to data planes that ask
        st, _, served = self.d.request("GET", "/v1/ledger/checkpoint", token="auditor")
        self.assertEqual((st, served["seq"]), (200, 12))
        tmp = tempfile.mkdtemp(prefix="checkpoint-dp-")
        capture, report = os.path.join(tmp, "in.pcap"), os.path.join(tmp, "report.json")
        with open(capture, "wb") as f:  # a capture without packets: only the control side matters
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        r = subprocess.run([REPLAY, "--quiet", "--control", os.path.join(self.d.dir, "dp.sock"), "--name", "edge-1",
                            "--checkpoint-public-key", self.pub, "--report", report, capture,
                            os.path.join(tmp, "out.pcap")], capture_output=True, text=True, timeout=PATIENCE * 2)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(report) as f:
            held = json.load(f)["control"]["checkpoint"]
        self.assertEqual((held["seq"], held["verified"], held["kept"], held["refused"]), (12, True, 1, 0), held)
        self.assertEqual(held["line"], served["line"])
        self.assertIn("ledger checkpoint: " + served["line"], r.stderr)
        self.d.stop()
        seen = os.path.join(tmp, "seen")
        with open(seen, "w") as f:
            f.write(held["line"] + "\n")
        def verify_seen():
            return subprocess.run([OPTGATECTL, "verify-ledger", self.d.db, "--checkpoints", seen, "--public-key",
                                   self.pub], capture_output=True, text=True, timeout=PATIENCE * 2)
        r = verify_seen()
        self.assertEqual(r.returncode, 0, r.stderr)
        # The newest events dropped and consentd's own file cut to match:
        # that file no longer tells, the data plane's copy does.
        with_events_writable(self.d.db, lambda c: c.execute("DELETE FROM events WHERE seq > 10"))
        with open(self.file) as f:
            lines = f.read().splitlines()
        with open(self.file, "w") as f:
            f.write("".join(line + "\n" for line in lines if " seq=12 " not in line))
        r = self.verify(None, "--public-key", self.pub)
        self.assertNotIn("TRUNCATED", r.stderr)  # (the derived tables still name event 12: INCONSISTENT)
        r = verify_seen()
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("TRUNCATED: the ledger ends at event 10, but event 12 was signed", r.stderr)
        shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main(verbosity=2)
