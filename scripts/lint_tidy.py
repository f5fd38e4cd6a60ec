#!/usr/bin/env python3
"""clang-tidy over the project's own translation units, for scripts/lint.

    lint_tidy.py ROOT BUILD WORKDIR CACHE CLANG_TIDY FILE...

Prints one line per finding ("FILE:LINE:COL: message [check]", paths
relative to ROOT, each once), then "FAILED <what>" for each run that failed
without a finding (a crash, a bad config), and last a summary line:
    tidy-stats UNITS CHECKED RUNS SPLIT SECONDS

How (docs/testing.md, "Static checks"):

- The units: each source of the build's compile_commands.json under src/,
  tests/, bench/ or tools/ that is among FILE..., once (meson lists a source
  shared by several executables once per executable); a unity file of the
  build stands for the sources it includes (the test programs').
- Chunks: the units of one meson target (the same compile command but for
  the source and its outputs) in compile_commands order, at most CHUNK of
  them per clang-tidy run, which reads a file that #includes them. The
  sources of a target share most of their headers (Boost's above all), and
  clang-tidy's matchers walk every declaration and template instantiation
  of those: read once per chunk, not once per source, a cold run costs
  about 40 % of checking each source on its own. Each source of src/ compiles
  on its own in the gcc build (-Werror), which is where a missing #include
  shows.
- A chunk whose sources do not compile together (two file-local names
  alike) is split in two and each half checked again, down to single
  sources, so every source is checked whatever its neighbours. Only the
  compiler's errors split a chunk; findings do not.
- The cache: one entry per chunk, keyed by everything clang-tidy's answer
  depends on: its version, .clang-tidy, and each member's compile command
  and the content of its source and of every header it includes (ninja's
  dependency log; paths relative to ROOT, so another clone hits). A chunk
  with a source the build has not compiled is always checked; a crash is
  never cached.
"""

import concurrent.futures
import glob
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time

# Sources per clang-tidy run (OPTGATE_LINT_CHUNK=1: each on its own).
CHUNK = max(1, int(os.environ.get("OPTGATE_LINT_CHUNK", "8")))
JOBS = 2  # clang-tidy processes at a time: the CI machine's cores

root, build, work, cache, clang_tidy = sys.argv[1:6]
wanted = {os.path.realpath(w) for w in sys.argv[6:]}
build = os.path.realpath(build)
own = tuple(os.path.join(root, d) + os.sep for d in ("src", "tests", "bench", "tools"))
version = subprocess.run([clang_tidy, "--version"], capture_output=True, text=True).stdout
config_path = os.path.join(root, ".clang-tidy")
config = open(config_path, "rb").read()


def relative(text):
    return text.replace(root + os.sep, "<root>/")


def command_of(e):
    return e["arguments"] if "arguments" in e else shlex.split(e["command"])


def target_of(e, path):
    """The compile command without the source and the outputs: one per meson target."""
    args, out, skip = command_of(e), [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-MQ", "-MF", "-MT"):
            skip = True
        elif os.path.realpath(os.path.join(e["directory"], a)) != path:
            out.append(a)
    return e["directory"] + "\0" + "\0".join(out)


# ---- the units, each once
# A unity file of the build (meson's "NAME-unityN.cpp", which #includes a
# few sources of one target: the test programs are built so) stands for
# its sources, each with the unity file's command; its object's
# dependencies, all of its sources' headers, key each of them in the cache.
unity_file = re.compile(r"-unity[0-9]+\.cpp$")
unity_line = re.compile(r'^#include\s*[<"](.+)[>"]\s*$')


def sources_of(path):
    if not (path.startswith(build + os.sep) and unity_file.search(path)):
        return [path]
    with open(path) as f:
        found = [unity_line.match(line.strip()) for line in f]
    return [os.path.realpath(os.path.join(os.path.dirname(path), m.group(1))) for m in found if m]


seen, units = set(), []
for e in json.load(open(os.path.join(build, "compile_commands.json"))):
    path = os.path.realpath(os.path.join(e["directory"], e["file"]))
    for source in sources_of(path):
        if not source.startswith(own) or source in seen or source not in wanted:
            continue
        seen.add(source)
        unit = e
        if source != path:
            unit = dict(e)
            unit.pop("command", None)
            unit["arguments"] = [source if os.path.realpath(os.path.join(e["directory"], a)) == path else a
                                 for a in command_of(e)]
            unit["file"] = source
        units.append((source, unit))

# Dependencies of each object, from ninja's log: "OUT: #deps N, ... (VALID)".
deps, current = {}, None
outputs = [e["output"] for _, e in units if "output" in e]
log = subprocess.run(["ninja", "-C", build, "-t", "deps", *outputs], capture_output=True, text=True).stdout
for line in log.splitlines():
    if line and not line.startswith(" "):
        name = line.split(":", 1)[0]
        current = deps.setdefault(name, []) if line.rstrip().endswith("(VALID)") else None
    elif line.strip() and current is not None:
        current.append(line.strip())

digests = {}


def digest(path):
    if path not in digests:
        try:
            with open(path, "rb") as f:
                digests[path] = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            digests[path] = "missing"
    return digests[path]


def unit_key(e):
    d = deps.get(e.get("output", ""))
    if not d:
        return None
    h = hashlib.sha256()
    h.update(relative(e["directory"] + "\0" + "\0".join(command_of(e))).encode())
    for dep in sorted(d):
        full = os.path.realpath(os.path.join(e["directory"], dep))
        h.update(("\0" + relative(full) + "\0" + digest(full)).encode())
    return h.hexdigest()


def chunk_key(members):
    keys = [unit_key(e) for _, e in members]
    if None in keys:
        return None
    h = hashlib.sha256(version.encode() + b"\0" + config + b"\0")
    for k in keys:
        h.update(k.encode() + b"\0")
    return h.hexdigest()


# ---- chunks: a target's units in order, CHUNK at a time
by_target = {}
for path, e in units:
    by_target.setdefault(target_of(e, path), []).append((path, e))
chunks = []
for members in by_target.values():
    for i in range(0, len(members), CHUNK):
        chunks.append(members[i:i + CHUNK])

colour = re.compile(r"\x1b\[[0-9;]*m")
finding = re.compile(r"^(\S+?):(\d+):(\d+): (warning|error): (.*) \[([\w.,-]+)\]$")
os.makedirs(os.path.join(work, "runs"), exist_ok=True)


def run(n, members):
    """Run n: one clang-tidy over `members`. Returns (crashed, findings, compile_error, log path)."""
    base = os.path.join(work, "runs", str(n))
    e = dict(members[0][1])
    if len(members) == 1:
        source = members[0][0]
    else:
        # The chunk's file sits in the work directory; --config-file names
        # .clang-tidy, which clang-tidy would otherwise look for beside it.
        source = base + ".cpp"
        with open(source, "w") as f:
            for path, _ in members:
                f.write(f'#include "{path}"\n')
    args = command_of(e)
    first = members[0][0]
    args = [source if os.path.realpath(os.path.join(e["directory"], a)) == first else a for a in args]
    e.pop("command", None)
    e.pop("output", None)
    e["arguments"], e["file"] = args, source
    os.makedirs(base + ".db", exist_ok=True)
    json.dump([e], open(os.path.join(base + ".db", "compile_commands.json"), "w"))
    with open(base + ".out", "w") as out, open(base + ".err", "w") as err:
        rc = subprocess.run([clang_tidy, "-quiet", "--config-file=" + config_path, "-p", base + ".db", source],
                            stdout=out, stderr=err).returncode
    items, compile_error, reported = [], False, 0
    for line in open(base + ".out", errors="replace"):
        m = finding.match(colour.sub("", line).rstrip("\n"))
        if not m:
            continue
        reported += 1
        check = m.group(6).replace(",-warnings-as-errors", "")
        if check == "clang-diagnostic-error":
            compile_error = True
        path = os.path.realpath(os.path.join(e["directory"], m.group(1)))
        if path == source and len(members) > 1:
            continue  # the chunk's own #include lines (bugprone-suspicious-include)
        items.append(f"{os.path.relpath(path, root)}:{m.group(2)}:{m.group(3)}: {m.group(5)} [{check}]")
    # A failed run that reported nothing crashed or could not start.
    return rc != 0 and reported == 0, items, compile_error, base


start = time.monotonic()
found, failed = set(), []
checked = runs = split = 0
todo = []
for members in chunks:
    key = chunk_key(members)
    if key is not None and os.path.exists(os.path.join(cache, key)):
        found.update(l.rstrip("\n") for l in open(os.path.join(cache, key)) if l.strip())
    else:
        todo.append(members)
        checked += len(members)


class Job:
    """A chunk being checked; its halves, when it had to be split, report to it."""

    def __init__(self, members, parent=None):
        self.members, self.parent, self.items, self.pending, self.ok = members, parent, [], 0, True

    def done(self):
        if self.parent is None:
            key = chunk_key(self.members)
            if self.ok and key is not None:
                tmp = os.path.join(cache, key + ".tmp")
                with open(tmp, "w") as f:
                    f.write("".join(i + "\n" for i in self.items))
                os.replace(tmp, os.path.join(cache, key))
        else:
            p = self.parent
            p.items += self.items
            p.ok = p.ok and self.ok
            p.pending -= 1
            if p.pending == 0:
                p.done()


with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
    running = {pool.submit(run, n, m): Job(m) for n, m in enumerate(todo)}
    n = len(todo)
    while running:
        finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        for fut in finished:
            job = running.pop(fut)
            crashed, items, compile_error, base = fut.result()
            runs += 1
            if compile_error and len(job.members) > 1:
                # Not compilable together: each half on its own.
                split += 1
                half = len(job.members) // 2
                job.pending = 2
                for part in (job.members[:half], job.members[half:]):
                    running[pool.submit(run, n, part)] = Job(part, job)
                    n += 1
                continue
            if crashed:
                failed.append(base)
                job.ok = False
            job.items = items
            found.update(items)
            job.done()

with open(os.path.join(build, "lint-clang-tidy.log"), "w") as raw:  # the raw output, for a closer look
    for out in sorted(glob.glob(os.path.join(work, "runs", "*.out")), key=lambda p: int(os.path.basename(p)[:-4])):
        raw.write(open(out, errors="replace").read())
for line in sorted(found):
    print(line)
for base in failed:
    print(f"FAILED {base}")
print(f"tidy-stats {len(units)} {checked} {runs} {split} {int(time.monotonic() - start)}")
