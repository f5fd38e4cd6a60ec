"""A PostgreSQL 15 server of the test's own: initdb in a temporary directory,
a Unix socket (and a TCP port on `listen`, an address of this machine, if
given; `trust` for clients from `clients`, a network), stopped and removed
at the end. Run as the
postgres user when the suite runs as root (PostgreSQL refuses root).

    pg = PgServer()
    locator = pg.new_database("ledger1")   # "postgresql:host=... dbname=ledger1"
    pg.restart()                           # a fast shutdown and a start
    pg.stop()

`fsync` stays on unless asked: tests that count on nothing acknowledged
being lost ask PostgreSQL for real durability.
"""
import os
import pwd
import shutil
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin/"
PATIENCE = 60  # a busy 2-core machine; waits poll, so this costs nothing when all is well


def _as_owner(argv):
    if os.geteuid() != 0:
        return argv
    return ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


class PgServer:
    def __init__(self, fsync=True, listen=None, clients=None):
        if not os.path.exists(BIN + "postgres"):
            raise RuntimeError("no PostgreSQL 15 server: install postgresql-15 (scripts/setup)")
        self.dir = tempfile.mkdtemp(prefix="optgate-pg-")
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.fsync = fsync
        self.listen = listen or ""
        r = subprocess.run(_as_owner([BIN + "initdb", "--pgdata", self.data, "--auth", "trust", "--username",
                                      "optgate", "--encoding", "UTF8", "--locale", "C", "--no-sync"]),
                           capture_output=True, text=True, timeout=PATIENCE)
        if r.returncode != 0:
            raise RuntimeError("initdb failed: " + r.stdout + r.stderr)
        if clients:
            with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
                f.write(f"host all all {clients} trust\n")
        self.proc = None
        self.start()

    def conninfo(self, dbname="postgres"):
        return f"host={self.dir} user=optgate dbname={dbname}"

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            _as_owner([BIN + "postgres", "-D", self.data, "-k", self.dir, "-c", "listen_addresses=" + self.listen,
                       "-c", "fsync=" + ("on" if self.fsync else "off"), "-c", "max_connections=200"]),
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + PATIENCE
        while True:
            r = subprocess.run([BIN + "pg_isready", "-h", self.dir, "-U", "optgate", "-d", "postgres"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start: " + self.read_log())
            time.sleep(0.05)

    def stop(self):
        """A fast shutdown (SIGINT): sessions end, transactions in flight roll back."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.start()

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def psql(self, sql, dbname="postgres"):
        """Runs `sql`; its output (unaligned, tuples only). Raises on an error."""
        r = subprocess.run(["/usr/bin/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-U",
                            "optgate", "-d", dbname, "-c", sql], capture_output=True, text=True, timeout=PATIENCE)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {sql}: {r.stderr}")
        return r.stdout

    def new_database(self, name):
        """An empty database for one ledger; its consentd locator."""
        self.psql(f'CREATE DATABASE "{name}"')
        return "postgresql:" + self.conninfo(name)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    # A server to try consentd on, or for bench-consentd --postgresql
    # (docs/benchmarks.md): prints its connection string, runs until
    # interrupted, then removes itself.
    import signal
    import sys
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    pg = PgServer(fsync="--no-fsync" not in sys.argv)
    print(pg.conninfo(), flush=True)
    try:
        signal.sigwait(stop)
    finally:
        pg.cleanup()
