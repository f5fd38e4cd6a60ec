#!/usr/bin/env python3
"""The systemd units name only what `meson install` creates
(docs/deploy.md#systemd): every binary on an Exec line and the
Documentation= file exist after an install into a temporary DESTDIR, with
the build's prefix in place of the units' /usr/local.

usage: install_test.py SOURCE_ROOT BUILD_ROOT
"""
import json
import os
import re
import subprocess
import sys
import tempfile

OURS = {"optgate", "optgate-replay", "consentd", "optgatectl"}


def main():
    root, build = sys.argv[1], sys.argv[2]
    options = json.loads(subprocess.run(["meson", "introspect", build, "--buildoptions"], capture_output=True,
                                        text=True, check=True).stdout)
    prefix = next(o["value"] for o in options if o["name"] == "prefix")
    failures = []
    with tempfile.TemporaryDirectory(prefix="optgate-install-") as dest:
        r = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--quiet", "--destdir", dest],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(f"meson install failed:\n{r.stdout}{r.stderr}")
        units = os.path.join(root, "config", "systemd")
        checked = 0
        for unit in sorted(os.listdir(units)):
            with open(os.path.join(units, unit)) as f:
                for line in f:
                    paths = []
                    m = re.match(r"(ExecStart|ExecStartPre|ExecReload)=[-@+!:]*(/\S+)", line)
                    if m:
                        paths.append(m.group(2))
                    m = re.match(r"Documentation=file://(/\S+)", line)
                    if m:
                        paths.append(m.group(1))
                    for p in paths:
                        if not p.startswith("/usr/local/"):
                            # The system's own (/bin/kill); ours live under the prefix.
                            if os.path.basename(p) in OURS:
                                failures.append(f"{unit}: {p} is not under /usr/local, where the docs say it is")
                            continue
                        installed = dest + prefix + p[len("/usr/local"):]
                        checked += 1
                        if not os.path.exists(installed):
                            failures.append(f"{unit}: {p} is not created by meson install (looked for {installed})")
        if checked == 0:
            failures.append("no Exec or Documentation path found in the units")
    if failures:
        print("\n".join(failures))
        raise SystemExit(1)
    print(f"systemd units: {checked} paths, each created by meson install")


if __name__ == "__main__":
    main()
