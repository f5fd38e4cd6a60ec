"""A data plane for consentd's Python tests: optgate-replay --control
(OPTGATE_REPLAY) on a capture paced so that it stays connected while the
test looks at its table through consentd (GET /v1/dataplanes)."""
import os
import signal
import struct
import subprocess

from daemon import PATIENCE, eventually

REPLAY = os.environ.get("OPTGATE_REPLAY", "")


def paced_capture(path, seconds):
    """Two Ethernet frames `seconds` apart: a paced replay of it stays
    connected to consentd that long (its table is what is checked)."""
    frame = bytes(6) + bytes([2, 0, 0, 0, 0, 1]) + b"\x08\x00" + bytes(46)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts in (1_700_000_000, 1_700_000_000 + seconds):
            f.write(struct.pack("<IIII", ts, 0, len(frame), len(frame)) + frame)


def start_paced(tmp, name, *consentds):
    """optgate-replay named `name`, trying each of `consentds` (Daemon) in
    turn; the caller kills it. Returns (process, capture)."""
    if not REPLAY:
        raise RuntimeError("OPTGATE_REPLAY is not set (the test's meson entry passes it)")
    capture = os.path.join(tmp, "paced.pcap")
    if not os.path.exists(capture):
        paced_capture(capture, 20 * PATIENCE)
    endpoints = ",".join(os.path.join(d.dir, "dp.sock") for d in consentds)
    proc = subprocess.Popen(
        [REPLAY, "--control", endpoints, "--name", name, "--pace", "--control-timeout", f"{PATIENCE}s",
         capture, os.path.join(tmp, f"out-{name}.pcap")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, capture


def thread_states(pid):
    """The scheduler state letter of each thread of process `pid`
    (/proc/PID/task/TID/stat); a thread that ended meanwhile is left out."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        # "TID (comm) S ...": comm may hold spaces and parentheses.
        states.append(stat[stat.rindex(")") + 2])
    return states


def stop(proc):
    """SIGSTOP to `proc`, returning once every one of its threads has
    stopped. kill() only queues the signal and wakes one thread, which
    then stops the others: until it has run, the others go on (on a busy
    machine, long enough for a data plane's control thread to apply and
    acknowledge a change sent after the kill)."""
    proc.send_signal(signal.SIGSTOP)
    if not eventually(lambda: all(s == "T" for s in thread_states(proc.pid))):
        raise AssertionError(f"process {proc.pid} did not stop: thread states {thread_states(proc.pid)}")


def dataplane(d, name):
    """The data plane `name` as consentd `d` lists it, or None."""
    st, _, body = d.request("GET", "/v1/dataplanes", token="auditor")
    if st != 200:
        return None
    return next((x for x in body["dataplanes"] if x["name"] == name), None)


def applied(d, name):
    x = dataplane(d, name)
    return x["applied_seq"] if x else -1


def reported(d, name, stat):
    """The value of `stat` in the last report of data plane `name` to
    consentd `d` (GET /v1/dataplanes?stats=true), or None."""
    st, _, body = d.request("GET", "/v1/dataplanes?stats=true", token="auditor")
    if st != 200:
        return None
    x = next((x for x in body["dataplanes"] if x["name"] == name), None)
    return next((e["value"] for e in x["stats"] if e["name"] == stat and "labels" not in e), None) if x else None
