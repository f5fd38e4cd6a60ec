"""A consentd process for tests: temporary directory, config, policy copy,
port 0 (the daemon writes the port it bound to a file), and HTTP helpers.

Environment (set by tests/consentd/meson.build): CONSENTD, OPTGATECTL,
CONSENTD_TEST_POLICY; and CONSENTD_TEST_LEDGER=postgresql to run the same
tests on the PostgreSQL store: every Daemon then gets a database of its own
on one PostgreSQL server that this module starts (pg_server.py), and `db` is
its locator, which optgatectl verify-ledger takes as it takes a file.
"""
import atexit
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

CONSENTD = os.environ["CONSENTD"]
# How long a test waits for something that should happen (a start, a stop, a
# reload, an answer): generous, because the suite runs on a busy 2-core
# machine and under ASan (about 3x slower). Waits poll for their condition,
# so it costs nothing when things go well (docs/testing.md).
PATIENCE = 60
OPTGATECTL = os.environ["OPTGATECTL"]
POLICY = os.environ["CONSENTD_TEST_POLICY"]
BACKEND = os.environ.get("CONSENTD_TEST_LEDGER", "sqlite")
_pg = None  # the PostgreSQL server, started with the first Daemon that needs it


def pg_server():
    global _pg
    if _pg is None:
        from pg_server import PgServer
        # fsync off: these suites are about the API, not about surviving a
        # power cut (pg_outage_test.py runs its own server with fsync on),
        # and every Daemon's CREATE DATABASE would otherwise wait for a
        # checkpoint's fsyncs.
        _pg = PgServer(fsync=False)
        atexit.register(_pg.cleanup)
    return _pg

# name -> (token, role)
TOKENS = {
    "auditor": ("read-token-0123456789", "read"),
    "portal": ("write-token-0123456789", "write"),
    "ops": ("admin-token-0123456789", "admin"),
}


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def rss_kib(pid):
    """A process's resident set (VmRSS), in KiB: the attack tests' bound."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def eventually(pred, timeout=PATIENCE):
    """Polls `pred` until it holds or `timeout` passes; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def json_keys_body(keys=120000):
    """A grant's body with `keys` extra keys (938 KiB for 120k, under
    max_body_bytes) and the first repeated last: a duplicate-key check must
    look at every key (issue 17, item 4). Returns (body, the repeated key)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    names = [alphabet[i % 62] + alphabet[i // 62 % 62] + alphabet[i // 3844] for i in range(keys)]
    body = ('{"source": "portal", "notice_version": "2024-05", ' + ",".join(f'"{k}":0' for k in names)
            + f',"{names[0]}":1}}')
    return body, names[0]


def history_request(subscriber, history, token):
    """The raw request for a subscriber's page of `history` events (item 8)."""
    return (f"GET /v1/subscribers/{subscriber}?history={history} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\n\r\n").encode()


def import_head(length, token):
    """The raw header of an NDJSON import announcing `length` bytes (item 9)."""
    return (f"POST /v1/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/x-ndjson\r\nContent-Length: {length}\r\n\r\n").encode()


def long_history(d, subscriber, events):
    """Gives `subscriber` a history of `events` events: one import binds it
    that many addresses (100.64.0.0 up), an event each."""
    addresses = [f"100.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}" for i in range(events)]
    # Minutes under ASan beside a CPU hog (100,000 events on PostgreSQL):
    # the import's own time, not what a test checks.
    c = d.connect(timeout=5 * PATIENCE)
    try:
        st, _, j = d.request("POST", "/v1/import", json.dumps({"subscriber": subscriber, "addresses": addresses})
                             + "\n", token="ops", headers={"Content-Type": "application/x-ndjson"}, conn=c)
    finally:
        c.close()
    assert st == 200 and j["events"] == events, (st, j)


class Attack:
    """`n` attackers on threads, each repeating `one(i)` until stopped, at
    most `rounds` times and 3 x PATIENCE seconds (longer than a test waits
    for what it checks while the attack goes on): bounded, and it stops by
    itself. What each round returned is in `answers`; an exception ends its
    thread and is kept in `errors`."""

    def __init__(self, n, rounds, one):
        self.stop = threading.Event()
        self.answers, self.errors = [], []

        def run(i):
            end = time.monotonic() + 3 * PATIENCE
            try:
                for _ in range(rounds):
                    if self.stop.is_set() or time.monotonic() > end:
                        return
                    self.answers.append(one(i))
            except Exception as e:  # noqa: BLE001 (reported by the test)
                self.errors.append(e)

        self.threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def running(self):
        return all(t.is_alive() for t in self.threads)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(PATIENCE)


class Daemon:
    """Starts consentd on 127.0.0.1, port 0, with a fresh ledger (or the one
    in `workdir` when given, to restart over the same files)."""

    def __init__(self, limits="", workdir=None, env=None, dataplanes="{socket: dp.sock}", args=(), rss_bounded=False,
                 pg=None, pg_host=None, pg_database=None, standby=False, follow=False, fence_after=None,
                 wait=True, netns=None, address="127.0.0.1"):
        """`pg`: a PgServer of the test's own (the ledger on PostgreSQL
        whatever CONSENTD_TEST_LEDGER says); `pg_host`: the socket directory
        consentd connects to instead of the server's (a proxy's);
        `pg_database`: another Daemon's database (two consentd, one ledger);
        `standby`: ledger.standby; `follow`: ledger.follow; `fence_after`: ledger.fence_after
        (e.g. "1s"); `wait`: wait until it listens (else call wait_listening());
        `netns`: a network namespace to run it in (`ip netns exec`), with
        `address` one of that namespace's that this one can reach."""
        self.owned_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="consentd-test-")
        if pg is not None or BACKEND == "postgresql":
            # The workdir names its database, so a restart over it finds the same ledger.
            name_file = os.path.join(self.dir, "pg-database")
            if not os.path.exists(name_file):
                with open(name_file, "w") as f:
                    f.write(pg_database or "ledger_" + os.path.basename(self.dir).replace("-", "_").lower())
            with open(name_file) as f:
                name = f.read()
            pg = pg or pg_server()
            self.pg_name = name
            self.db = "postgresql:" + pg.conninfo(name)
            if not pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
                pg.new_database(name)
            dsn = pg.conninfo(name) if pg_host is None else pg.conninfo(name).replace(pg.dir, pg_host)
            store = (f'ledger: {{backend: postgresql, dsn: "{dsn}"' + (", standby: true" if standby else "")
                     + (", follow: true" if follow else "")
                     + (f", fence_after: {fence_after}" if fence_after else "") + "}\n"
                     "pseudonym_keys: ledger.pseudonym-keys\n")
        else:
            self.db = os.path.join(self.dir, "ledger.db")
            store = "database: ledger.db\n"
        self.policy = os.path.join(self.dir, "policy.yaml")
        self.config = os.path.join(self.dir, "consentd.yaml")
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "consentd.log")
        if not os.path.exists(self.policy):
            shutil.copy(POLICY, self.policy)
        tokens = "".join(
            f"  - {{name: {n}, role: {role}, sha256: {sha256_hex(tok)}}}\n" for n, (tok, role) in TOKENS.items())
        with open(self.config, "w") as f:
            f.write(f"listen: {{address: {address}, port: 0}}\n"
                    + store +
                    "policy: policy.yaml\n"
                    f"dataplanes: {dataplanes}\n"  # not the shared /run/optgate default
                    "tokens:\n" + tokens + limits)
        self.env = dict(os.environ, **(env or {}))
        if rss_bounded:
            # A test bounds this daemon's RSS. Under ASan, freed memory waits
            # in a quarantine of up to 256 MiB (to catch a use after free),
            # which the bound would count as the daemon's: 16 MiB here (a
            # stats-header attack grew +330 MiB with 256, +37 MiB with 16;
            # +5.7 MiB with gcc, which ignores the option).
            asan = self.env.get("ASAN_OPTIONS", "")
            self.env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=16"
        self.args = list(args)  # more command-line options
        self.netns = netns
        self.address = address
        self.proc = None
        if wait:
            self.start()
        else:
            self.launch()

    def start(self):
        self.launch()
        self.wait_listening()

    def launch(self):
        """Starts the process without waiting for it to listen."""
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self.log = open(self.log_path, "a")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []  # it execs consentd: the same pid
        self.proc = subprocess.Popen([*prefix, CONSENTD, "--config", self.config, "--port-file", self.port_file,
                                      *self.args],
                                     stdout=self.log, stderr=self.log, env=self.env)

    def wait_listening(self, timeout=PATIENCE):
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None:
                raise RuntimeError("consentd exited: " + self.read_log())
            if time.monotonic() > deadline:
                raise RuntimeError("consentd did not start: " + self.read_log())
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read())

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL: no chance to finish anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def cleanup(self):
        self.stop()
        if self.owned_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def connect(self, timeout=PATIENCE):
        return http.client.HTTPConnection(self.address, self.port, timeout=timeout)

    def request(self, method, path, body=None, token="portal", headers=None, conn=None):
        """Returns (status, headers, parsed JSON or text). `body`: a dict
        (sent as JSON), str/bytes (sent as is) or None."""
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + (TOKENS[token][0] if token in TOKENS else token)
        if isinstance(body, dict):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        own = conn is None
        c = conn or self.connect()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            if own:
                c.close()
        ctype = hdrs.get("content-type", "")
        parsed = json.loads(data) if ctype.startswith("application/json") else data.decode()
        return r.status, hdrs, parsed

    def ctl(self, *args, token="portal", env=None, input=None):
        e = dict(os.environ, OPTGATE_SERVER=f"http://{self.address}:{self.port}",
                 OPTGATE_TOKEN=TOKENS[token][0] if token else "")
        e.update(env or {})
        return subprocess.run([OPTGATECTL, *args], capture_output=True, text=True, env=e, input=input,
                              timeout=120)

    def metric(self, name):
        """The value of an unlabelled metric line, or of `name{labels}`."""
        _, _, text = self.request("GET", "/metrics", token="auditor")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None
