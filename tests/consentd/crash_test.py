#!/usr/bin/python3
"""consentd crash safety: concurrent clients send grants, revokes, binds and
unbinds while consentd is killed with SIGKILL at random moments and
restarted over the same ledger, several times. Then:

  - every acknowledged change is in the ledger: the event with the
    acknowledged sequence number is that change;
  - the final state of every consent and binding is what the last
    acknowledged request on it said (or, when the last request got no answer
    because of a kill, that or what came before);
  - optgatectl verify-ledger passes;
  - an independent Python implementation of the hash chain and of the fold
    of the events agrees with the stored hashes and derived tables.

Each client thread owns its subscribers and addresses, so the order of the
requests on each key is known.
"""
import hashlib
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import OPTGATECTL, PATIENCE, TOKENS, Daemon  # noqa: E402

CLIENTS = 16
SUBSCRIBERS_PER_CLIENT = 6
ADDRESSES_PER_CLIENT = 4
PURPOSES = ["advertising", "analytics"]
KILLS = 6
MIN_ACKED = 2000  # acknowledged changes across the kills, to mean anything
SEED = int(os.environ.get("CRASH_SEED", time.time_ns() % 1_000_000))


class Client(threading.Thread):
    def __init__(self, n, daemon, stop):
        super().__init__(daemon=True)
        self.n, self.d, self.stop = n, daemon, stop
        self.rng = random.Random(SEED * 100 + n)
        self.subs = [f"crash-{n}-{j}" for j in range(SUBSCRIBERS_PER_CLIENT)]
        self.addrs = [f"100.66.{n}.{j + 1}" for j in range(ADDRESSES_PER_CLIENT)]
        # key -> the set of values the key may hold now
        self.consent = {(s, p): {False} for s in self.subs for p in PURPOSES}
        self.binding = {a: {None} for a in self.addrs}
        self.acked = []  # (seq, subscriber, action, purpose or address)
        self.unanswered = 0
        self.conn = None

    def call(self, method, path, body):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        self.conn.request(method, path, body=json.dumps(body), headers={
            "Authorization": "Bearer " + TOKENS["portal"][0], "Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, json.loads(r.read())

    def one(self):
        if self.rng.random() < 0.8:
            sub, purpose = self.rng.choice(self.subs), self.rng.choice(PURPOSES)
            grant = self.rng.random() < 0.5
            key, value = (sub, purpose), grant
            method = "PUT" if grant else "DELETE"
            path, body = f"/v1/subscribers/{sub}/consents/{purpose}", {"source": "crash", "notice_version": "v1"}
            table = self.consent
        else:
            addr = self.rng.choice(self.addrs)
            key, table = addr, self.binding
            if self.rng.random() < 0.7:
                value = self.rng.choice(self.subs)
                method, path, body = "PUT", f"/v1/bindings/{addr}", {"subscriber": value, "source": "crash"}
            else:
                value, method, path, body = None, "DELETE", f"/v1/bindings/{addr}", {"source": "crash"}
        try:
            status, j = self.call(method, path, body)
        except ConnectionRefusedError:
            # Not sent: consentd is down between a kill and its restart.
            self.conn = None
            time.sleep(0.02)
            return
        except (OSError, http.client.HTTPException, ValueError):
            # No answer: the request may or may not have committed.
            table[key].add(value)
            self.unanswered += 1
            if self.conn:
                self.conn.close()
            self.conn = None
            time.sleep(0.02)
            return
        if status == 404 and value is None:  # unbind of an unbound address: confirmed unbound
            table[key] = {None}
            return
        assert status == 200, (status, j)
        table[key] = {value}
        if isinstance(key, tuple):
            self.acked.append((j["seq"], key[0], "grant" if value else "revoke", key[1]))
        elif value is None:
            self.acked.append((j["seq"], j["subscriber"], "unbind", key))
        else:
            self.acked.append((j["seq"], value, "bind", key))

    def run(self):
        while not self.stop.is_set():
            self.one()


# ---- an independent implementation of the ledger's rules (docs/consentd.md) ----

def field(v):
    if v is None:
        return b"\x00"
    b = v.encode()
    return b"\x01" + len(b).to_bytes(4, "big") + b


def event_hash(prev_hex, e):
    enc = b"optgate-ledger-v1\n" + b"".join(field(x) for x in (
        str(e["seq"]), e["time"], e["subscriber"], e["action"], e["purpose"], e["address"], e["source"],
        e["notice_version"], e["credential"]))
    return hashlib.sha256(bytes.fromhex(prev_hex) + enc).hexdigest()


def check_ledger(db_path):
    """Re-walks the chain, folds the events, compares with the derived tables.
    Returns the events by seq."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    events = [dict(r) for r in db.execute("SELECT * FROM events ORDER BY seq")]
    prev = "0" * 64
    consents, bindings = {}, {}
    for i, e in enumerate(events, 1):
        assert e["seq"] == i, f"gap before event {e['seq']}"
        assert e["prev_hash"] == prev, f"event {i}: prev_hash"
        assert e["hash"] == event_hash(prev, e), f"event {i}: hash"
        prev = e["hash"]
        row = {k: e[k] for k in ("seq", "time", "source", "credential")}
        if e["action"] == "grant":
            consents[(e["subscriber"], e["purpose"])] = dict(row, notice_version=e["notice_version"])
        elif e["action"] == "revoke":
            consents.pop((e["subscriber"], e["purpose"]), None)
        elif e["action"] == "bind":
            assert bindings.get(e["address"], {}).get("subscriber", e["subscriber"]) == e["subscriber"], \
                f"event {i}: bind of a held address without unbind"
            bindings[e["address"]] = dict(row, subscriber=e["subscriber"])
        else:
            assert bindings.get(e["address"], {}).get("subscriber") == e["subscriber"], f"event {i}: bad unbind"
            del bindings[e["address"]]
    stored_c = {(r["subscriber"], r["purpose"]): {k: r[k] for k in ("seq", "time", "source", "credential",
                                                                     "notice_version")}
                for r in db.execute("SELECT * FROM consents")}
    stored_b = {r["address"]: {k: r[k] for k in ("seq", "time", "source", "credential", "subscriber")}
                for r in db.execute("SELECT * FROM bindings")}
    db.close()
    assert stored_c == consents, "consents table != fold of the events"
    assert stored_b == bindings, "bindings table != fold of the events"
    return consents, bindings, events


def main():
    print(f"crash test seed {SEED} (set CRASH_SEED to repeat)", flush=True)
    rng = random.Random(SEED)
    d = Daemon()
    stop = threading.Event()
    clients = [Client(n, d, stop) for n in range(CLIENTS)]
    try:
        for c in clients:
            c.start()
        for k in range(KILLS):
            time.sleep(rng.uniform(0.4, 1.5))
            # Progress before each kill, however slow the machine: the changes
            # acknowledged are spread over the kills.
            deadline = time.monotonic() + PATIENCE
            while sum(len(c.acked) for c in clients) < (k + 1) * MIN_ACKED // KILLS:
                assert time.monotonic() < deadline, f"too few changes acknowledged before kill {k + 1}"
                time.sleep(0.05)
            d.kill()
            print(f"kill {k + 1}: consentd killed with SIGKILL", flush=True)
            time.sleep(rng.uniform(0.0, 0.2))
            d.start()
        time.sleep(1.0)
        stop.set()
        for c in clients:
            c.join(timeout=30)
        d.stop()

        acked = [a for c in clients for a in c.acked]
        unanswered = sum(c.unanswered for c in clients)
        print(f"{len(acked)} acknowledged changes, {unanswered} requests cut off by kills", flush=True)
        assert len(acked) >= MIN_ACKED, "too few acknowledged changes to mean anything"
        assert unanswered > 0, "no request was in flight at a kill"

        consents, bindings, events = check_ledger(d.db)
        by_seq = {e["seq"]: e for e in events}
        for seq, sub, action, what in acked:
            e = by_seq.get(seq)
            assert e is not None, f"acknowledged event {seq} is missing"
            got = (e["subscriber"], e["action"], e["purpose"] if action in ("grant", "revoke") else e["address"])
            assert got == (sub, action, what), f"event {seq} is {got}, acknowledged as {(sub, action, what)}"
        for c in clients:
            for (sub, purpose), possible in c.consent.items():
                assert ((sub, purpose) in consents) in possible, (sub, purpose, possible)
            for addr, possible in c.binding.items():
                holder = bindings.get(addr, {}).get("subscriber")
                assert holder in possible, (addr, holder, possible)

        r = subprocess.run([OPTGATECTL, "verify-ledger", d.db], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        print(r.stdout.strip())

        # The restarted daemon serves the same state (it reloads it from the derived tables).
        d.start()
        sample = clients[0].subs[0]
        st, _, j = d.request("GET", f"/v1/subscribers/{sample}", token="auditor")
        if st == 200:
            assert sorted(c["purpose"] for c in j["consents"]) == sorted(
                p for (s, p) in consents if s == sample)
        print("crash test passed")
    finally:
        stop.set()
        d.cleanup()


if __name__ == "__main__":
    main()
