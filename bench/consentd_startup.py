#!/usr/bin/python3
"""consentd's start over a 1M-event ledger (docs/benchmarks.md, "Startup
integrity check"): 500,000 subscribers imported through the API (one address
and one consent each), then the same ledger started over by two consentd
binaries alternately, timed until the API listens, with their RSS.

  CONSENTD=BASE OPTGATECTL=build/src/ctl/optgatectl \
  CONSENTD_TEST_POLICY=tests/consentd/policy.yaml \
  /usr/bin/python3 bench/consentd_startup.py BASE NEW
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "consentd"))
import daemon  # noqa: E402
from daemon import Daemon  # noqa: E402

base, new = sys.argv[1], sys.argv[2]
N = 500_000
d = Daemon(limits="limits: {max_import_bytes: 268435456}\n")
lines = []
for i in range(N):
    a = f"100.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
    lines.append(json.dumps({"subscriber": f"s{i}", "addresses": [a], "consents": ["advertising"],
                             "notice_version": "v1"}))
body = "\n".join(lines) + "\n"
t = time.monotonic()
st, _, r = d.request("POST", "/v1/import?format=ndjson", body, token="ops",
                     headers={"Content-Type": "application/x-ndjson"})
print("import", st, str(r)[:200], round(time.monotonic() - t, 1), "s", flush=True)
d.stop()


def start(binary):
    daemon.CONSENTD = binary
    t = time.monotonic()
    d.start()
    el = time.monotonic() - t
    rss = int(open(f"/proc/{d.proc.pid}/status").read().split("VmRSS:")[1].split()[0]) // 1024
    d.stop()
    return el, rss


for rnd in range(2):
    for name, b in (("base", base), ("new", new)):
        el, rss = start(b)
        print(name, f"listening after {el:.2f} s, RSS {rss} MiB", flush=True)
print(open(d.log_path).read()[-600:])
d.cleanup()
