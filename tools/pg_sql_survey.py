#!/usr/bin/env python3
"""How much of consentd's SQL runs on PostgreSQL as it is (issue 19,
docs/scale-out.md, "The SQL on PostgreSQL").

Starts a throwaway PostgreSQL 15 (initdb in a temporary directory, a Unix
socket only; as the postgres user when run as root), creates the ledger's
tables from src/consentd/schema.hpp (kPgSchema, what consentd creates on
PostgreSQL), then asks PostgreSQL
to PREPARE every SQL statement written as one string literal in
src/consentd/*.cpp, with ?N as $N. Prints each statement that does not
prepare, with PostgreSQL's error, and a count.

    tools/pg_sql_survey.py [SOURCE_ROOT]

A statement assembled from pieces at run time (kHeld + "WHERE ...",
kEventColumns) is not seen; nor is one that prepares but means something
else on PostgreSQL (the survey checks syntax and names, not results).
Needs postgresql-15 (scripts/setup installs it).
"""
import glob
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin/"


def as_owner(argv):
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    src = os.path.join(root, "src", "consentd")
    tmp = tempfile.mkdtemp(prefix="pg-survey-")
    server = None
    try:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(tmp, pw.pw_uid, pw.pw_gid)
        data = os.path.join(tmp, "data")
        subprocess.run(as_owner([BIN + "initdb", "-D", data, "-A", "trust", "-U", "optgate", "-E", "UTF8",
                                 "--locale", "C", "--no-sync"]), check=True, capture_output=True)
        log = open(os.path.join(tmp, "postgres.log"), "w")
        server = subprocess.Popen(as_owner([BIN + "postgres", "-D", data, "-k", tmp, "-c", "listen_addresses=",
                                            "-c", "fsync=off"]), stdout=log, stderr=log)

        def psql(sql):
            r = subprocess.run(["psql", "-h", tmp, "-U", "optgate", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q",
                                "-c", sql], capture_output=True, text=True)
            return r.returncode, r.stderr.strip()

        deadline = time.monotonic() + 60
        while psql("SELECT 1")[0] != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("PostgreSQL did not start:\n" + open(os.path.join(tmp, "postgres.log")).read())
            time.sleep(0.05)

        text = open(os.path.join(src, "schema.hpp")).read()
        ddl = re.search(r'kPgSchema = R"sql\((.*?)\)sql"', text, re.S).group(1)
        rc, err = psql(ddl)
        if rc != 0:
            raise SystemExit("the schema does not load on PostgreSQL:\n" + err)

        statements, pieces = [], 0
        for path in sorted(glob.glob(os.path.join(src, "*.cpp"))):
            code = open(path).read()
            for m in re.finditer(r'((?:"(?:[^"\\]|\\.)*"\s*)+)', code):
                s = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
                if re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE|WITH|REPLACE)\b", s) and len(s) > 20:
                    if code[m.end():].lstrip().startswith("+"):
                        pieces += 1  # the start of a statement assembled at run time: not checked
                    else:
                        statements.append((os.path.basename(path), s))
        failed = 0
        for i, (name, s) in enumerate(statements):
            rc, err = psql(f"PREPARE s{i} AS " + re.sub(r"\?(\d+)", r"$\1", s))
            if rc != 0:
                failed += 1
                print(f"{name}: {s[:160]}\n    {err.splitlines()[0] if err else '?'}")
        print(f"{len(statements) - failed} of {len(statements)} statements prepare on PostgreSQL 15 as they are; "
              f"{failed} do not ({pieces} assembled at run time, not checked)")
    finally:
        if server:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
