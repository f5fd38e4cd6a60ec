#!/usr/bin/env python3
"""`optgate --check-config FILE` validates without starting EAL.

usage: check_config.py OPTGATE SOURCE_ROOT
"""
import os
import subprocess
import sys
import tempfile


def check(optgate, path):
    return subprocess.run([optgate, "--check-config", path], capture_output=True, text=True, timeout=60)


def main():
    optgate, root = sys.argv[1], os.path.abspath(sys.argv[2])
    failures = []
    example = os.path.join(root, "config/optgate.example.yaml")
    r = check(optgate, example)
    if r.returncode != 0 or "ok (controlled by /run/optgate/consentd.sock)" not in r.stdout:
        failures.append(f"the example does not check: {r.returncode} {r.stdout} {r.stderr}")
    if "EAL" in r.stdout + r.stderr:
        failures.append("EAL started for --check-config")

    with tempfile.TemporaryDirectory(prefix="optgate-check-config-") as tmp:
        bad = os.path.join(tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("ports: {subscriber: 0, internet: 1}\nworkers: {lcores: [1], steerin: rss}\n"
                    "control: {endpoint: /run/c.sock}\n")
        r = check(optgate, bad)
        want = f"{bad}:2:24: unknown key 'steerin' in 'workers' (did you mean 'steering'?)"
        if r.returncode != 2 or want not in r.stderr:
            failures.append(f"a misspelt key: exit {r.returncode}, stderr {r.stderr!r}, wanted {want!r}")

        # Static mode loads the policy and consent it names: a consent file
        # for a purpose the policy lacks is refused.
        consent = os.path.join(tmp, "consent.yaml")
        with open(consent, "w") as f:
            f.write("subscribers:\n  - id: s1\n    addresses: [100.64.0.1]\n    consents: [astrology]\n")
        static = os.path.join(tmp, "static.yaml")
        with open(static, "w") as f:
            f.write("ports: {subscriber: net_pcap0, internet: net_pcap1}\n"
                    f"static: {{policy: {os.path.join(root, 'config/policy.example.yaml')}, consent: consent.yaml}}\n")
        r = check(optgate, static)
        if r.returncode != 2 or "astrology" not in r.stderr or consent not in r.stderr:
            failures.append(f"an unknown purpose in the consent file: exit {r.returncode}, stderr {r.stderr!r}")
        with open(consent, "w") as f:
            f.write("subscribers:\n  - id: s1\n    addresses: [100.64.0.1]\n    consents: [advertising]\n")
        r = check(optgate, static)
        if r.returncode != 0 or "1 subscribers" not in r.stdout:
            failures.append(f"a good static config: exit {r.returncode}, {r.stdout!r} {r.stderr!r}")

        r = check(optgate, os.path.join(tmp, "missing.yaml"))
        if r.returncode != 2 or "missing.yaml" not in r.stderr:
            failures.append(f"a missing file: exit {r.returncode}, stderr {r.stderr!r}")

    if failures:
        print("\n".join(failures))
        raise SystemExit(1)
    print("optgate --check-config: example ok, mistakes reported with their location")


if __name__ == "__main__":
    main()
