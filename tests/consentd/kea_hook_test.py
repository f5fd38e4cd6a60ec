#!/usr/bin/python3
"""config/kea/optgate-kea-hook.sh, the Kea run_script hook script
(docs/radius.md, "DHCP: Kea"), run as Kea runs it: the hook point as its
argument and the lease in environment variables, against a real consentd,
through the real optgatectl. Checks what the ledger holds after each call.

Environment: as daemon.py, plus KEA_HOOK (the script).
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon import Daemon, TOKENS  # noqa: E402

HOOK = os.environ["KEA_HOOK"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def main():
    d = Daemon()
    work = tempfile.mkdtemp(prefix="kea-hook-test-")
    mapfile = os.path.join(work, "kea-subscribers")
    tokenfile = os.path.join(work, "token")
    with open(mapfile, "w") as f:
        f.write("02:00:00:00:00:01 cust-k1\n"
                "00:01:00:01:2a:2b:2c:2d:02:00:00:00:00:06 cust-k6\n")
    with open(tokenfile, "w") as f:
        f.write(TOKENS["portal"][0] + "\n")
    base = {"OPTGATE_KEA_MAP": mapfile, "OPTGATE_SERVER": f"http://127.0.0.1:{d.port}",
            "OPTGATE_TOKEN_FILE": tokenfile, "OPTGATECTL": os.environ["OPTGATECTL"], "OPTGATE_KEY_LENGTH": "64",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def hook(point, **lease):
        # Kea passes only its own variables: start from a bare environment.
        r = subprocess.run([HOOK, point], env=dict(base, **lease), capture_output=True, text=True, timeout=120)
        return r

    def bindings(sub):
        status, _, body = d.request("GET", f"/v1/subscribers/{sub}", token="auditor")
        return set() if status == 404 else {b["address"] for b in body["bindings"]}

    try:
        r = hook("leases4_committed", LEASES4_SIZE="2", LEASES4_AT0_ADDRESS="100.64.10.1",
                 LEASES4_AT0_HWADDR="02:00:00:00:00:01", LEASES4_AT1_ADDRESS="100.64.10.2",
                 LEASES4_AT1_HWADDR="02:00:00:00:00:99")
        check(r.returncode == 0, "leases4_committed: exit 0: " + r.stderr)
        check(bindings("cust-k1") == {"100.64.10.1"}, "a DHCPv4 lease binds its address to the mapped subscriber")
        _, _, body = d.request("GET", "/v1/subscribers/cust-k1", token="auditor")
        check(body["history"][-1]["source"] == "dhcp", "source dhcp")
        status, _, _ = d.request("GET", "/v1/subscribers/cust-k2", token="auditor")
        check(status == 404, "a client not in the map is left alone")

        r = hook("leases6_committed", LEASES6_SIZE="2",
                 LEASES6_AT0_ADDRESS="2001:db8:1000:a::5", LEASES6_AT0_PREFIX_LEN="128", LEASES6_AT0_TYPE="IA_NA",
                 LEASES6_AT0_DUID="00:01:00:01:2a:2b:2c:2d:02:00:00:00:00:06",
                 LEASES6_AT1_ADDRESS="2001:db8:1000:b00::", LEASES6_AT1_PREFIX_LEN="60", LEASES6_AT1_TYPE="IA_PD",
                 LEASES6_AT1_DUID="00:01:00:01:2a:2b:2c:2d:02:00:00:00:00:06")
        check(r.returncode == 0, "leases6_committed: exit 0: " + r.stderr)
        # A /60, not an operator's usual /56: the script runs optgatectl once
        # per /64, 256 processes for a /56 (two minutes under ASan), and 16
        # check the same arithmetic.
        want = {"2001:db8:1000:a::/64"} | {f"2001:db8:1000:b0{i:x}::/64" for i in range(16)}
        check(bindings("cust-k6") == want, "IA_NA binds its /64, IA_PD /60 every /64 it covers")

        r = hook("lease6_expire", LEASE6_ADDRESS="2001:db8:1000:b00::", LEASE6_PREFIX_LEN="60", LEASE6_TYPE="IA_PD",
                 LEASE6_DUID="00:01:00:01:2a:2b:2c:2d:02:00:00:00:00:06")
        check(r.returncode == 0 and bindings("cust-k6") == {"2001:db8:1000:a::/64"}, "lease6_expire of the PD")

        # The address went to someone else meanwhile: a late release must not unbind them.
        d.request("PUT", "/v1/bindings/100.64.10.1", {"subscriber": "cust-other", "source": "portal"})
        r = hook("lease4_release", LEASE4_ADDRESS="100.64.10.1", LEASE4_HWADDR="02:00:00:00:00:01")
        check(r.returncode != 0, "a release of an address bound to another subscriber fails (409)")
        check(bindings("cust-other") == {"100.64.10.1"}, "and leaves the new holder bound")

        d.request("PUT", "/v1/bindings/100.64.10.1", {"subscriber": "cust-k1", "source": "portal"})
        r = hook("lease4_expire", LEASE4_ADDRESS="100.64.10.1", LEASE4_HWADDR="02:00:00:00:00:01")
        check(r.returncode == 0 and bindings("cust-k1") == set(), "lease4_expire unbinds")
        r = hook("lease4_renew")
        check(r.returncode == 0, "other hook points are ignored")
    finally:
        d.cleanup()
        subprocess.run(["rm", "-rf", work])
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("kea hook: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
