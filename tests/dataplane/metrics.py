#!/usr/bin/env python3
"""optgate's own Prometheus endpoint (docs/dataplane.md#prometheus).

Runs optgate (two workers, static consent) on the sample capture with the
endpoint on 127.0.0.1, any port (it logs which). Once every frame is counted
there, checks the exposition: the expected families, each with its TYPE line
before its samples, every sample labelled with the data plane's name; that
bad requests get 4xx and a silent client does not stop the next scrape; then
stops optgate and checks that every value scraped equals the stats file's.

usage: metrics.py OPTGATE SAMPLE_CAPTURE POLICY CONSENT
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agreement import read_pcap, remove_runtime_dir, write_empty_pcap  # noqa: E402

PATIENCE = 60  # seconds: a generous deadline for what should happen (tests/consentd/daemon.py)
NAME = "metrics-test"
SAMPLE = re.compile(r'^([a-z_][a-z0-9_]*)\{dataplane="([^"]*)"(?:,([a-z_]+)="([^"]*)")?\} ([0-9]+)$')


def request(port, raw, timeout=PATIENCE):
    """Sends raw bytes, returns (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, headers, body.decode()


def parse(text):
    """{(family, label value or None): value}, checking the format as it goes."""
    samples, typed, problems = {}, set(), []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
            if kind not in ("counter", "gauge") or family in typed:
                problems.append(f"bad or repeated TYPE line: {line}")
            typed.add(family)
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        if not m:
            problems.append(f"not a sample: {line!r}")
            continue
        family, dataplane, _, label, value = m.groups()
        if family not in typed:
            problems.append(f"{family}: sample before its TYPE line")
        if dataplane != NAME:
            problems.append(f"{family}: dataplane=\"{dataplane}\"")
        samples[(family, label)] = int(value)
    return samples, problems


def main():
    optgate, capture, policy, consent = sys.argv[1:5]
    prefix = f"optgate-metrics-{os.getpid()}"
    failures = []
    frames = len(read_pcap(capture))
    err_lines = []
    with tempfile.TemporaryDirectory(prefix="optgate-metrics-") as tmp:
        empty = write_empty_pcap(tmp)
        stats = os.path.join(tmp, "stats.json")
        cmd = [optgate, "-l", "0-1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", prefix,
               f"--vdev=net_pcap0,rx_pcap={capture},tx_pcap={os.path.join(tmp, 'a.pcap')}",
               f"--vdev=net_pcap1,rx_pcap={empty},tx_pcap={os.path.join(tmp, 'b.pcap')}",
               "--", "--policy", policy, "--consent", consent, "--worker-lcores", "0,1", "--name", NAME,
               "--idle-sleep-us", "100", "--duration", "300",  # stopped below
               "--metrics-address", "127.0.0.1", "--metrics-port", "0", "--stats", stats]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        listening = threading.Event()
        port = []

        def read_stderr():
            for line in p.stderr:
                err_lines.append(line)
                m = re.search(r"metrics: listening on 127\.0\.0\.1:([0-9]+) ", line)
                if m:
                    port.append(int(m.group(1)))
                    listening.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            if not listening.wait(PATIENCE):
                raise SystemExit("no 'metrics: listening on' line:\n" + "".join(err_lines))
            port = port[0]
            samples = {}
            deadline = time.monotonic() + PATIENCE
            while time.monotonic() < deadline:
                status, headers, body = request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                if status != 200:
                    failures.append(f"GET /metrics: {status}")
                    break
                samples, problems = parse(body)
                if samples.get(("optgate_dp_packets", None)) == frames:
                    break
                time.sleep(0.2)
            if samples.get(("optgate_dp_packets", None)) != frames:
                failures.append(f"optgate_dp_packets never reached {frames}")
            if not headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"):
                failures.append(f"Content-Type: {headers.get('Content-Type')}")
            failures += problems
            for family, label in [("optgate_dp_packets", None), ("optgate_dp_forwarded", None),
                                  ("optgate_dp_dropped", None), ("optgate_dp_table_stale", None),
                                  ("optgate_dp_http_flow_table_full", None),
                                  ("optgate_dp_encapsulated_not_inspected_gtpu", None),
                                  ("optgate_dp_driver_rx", None), ("optgate_dp_driver_tx_full_dropped", None),
                                  ("optgate_dp_workers", None), ("optgate_dp_worker_packets", "0"),
                                  ("optgate_dp_worker_packets", "1"), ("optgate_dp_port_rx_packets", "subscriber"),
                                  ("optgate_dp_port_rx_missed", "internet"),
                                  ("optgate_dp_destination_stripped", "example-adnet")]:
                if (family, label) not in samples:
                    failures.append(f"missing {family} {label or ''}")
            if samples.get(("optgate_dp_table_stale", None)) != 0 or samples.get(("optgate_dp_workers", None)) != 2:
                failures.append("static consent: expected a fresh table and 2 workers")

            # Bad requests: 4xx, and the endpoint keeps answering.
            for raw, want in [(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
                              (b"GET /nothing HTTP/1.1\r\n\r\n", 404),
                              (b"GET / HTTP/1.1\r\n\r\n", 404),
                              (b"HELLO\r\n\r\n", 400),
                              (b"get /metrics HTTP/1.1\r\n\r\n", 400),
                              (b"GET metrics HTTP/1.1\r\n\r\n", 400),
                              (b"GET /metrics SPDY/3\r\n\r\n", 400),
                              (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431)]:
                status, headers, _ = request(port, raw)
                if status != want:
                    failures.append(f"{raw[:30]!r}: {status}, not {want}")
                if want == 405 and headers.get("Allow") != "GET, HEAD":
                    failures.append(f"405 without Allow: {headers}")
            status, headers, body = request(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
            if status != 200 or body or int(headers.get("Content-Length", "0")) == 0:
                failures.append(f"HEAD /metrics: {status}, {len(body)} bytes, {headers}")
            # A client that connects and says nothing holds the endpoint for
            # its deadline at most: the scrape behind it is answered.
            with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE):
                status, _, body = request(port, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n")
                if status != 200 or "optgate_dp_packets" not in body:
                    failures.append(f"scrape behind a silent client: {status}")

            final_scrape, _ = parse(request(port, b"GET /metrics HTTP/1.1\r\n\r\n")[2])
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=PATIENCE)
            reader.join(PATIENCE)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            remove_runtime_dir(prefix)
        if p.returncode != 0:
            failures.append(f"exit {p.returncode} after SIGTERM")
        try:
            with open(stats) as f:
                s = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"stats file: {e}\n" + "".join(err_lines))
        # What the stats file says is what was scraped (traffic had ended).
        expected = {(f"optgate_dp_{k}", None): v for k, v in s["counters"].items()}
        for k in ("rx", "tx", "tx_full_dropped", "multi_segment_dropped", "steering_ring_full_dropped",
                  "emit_dropped"):
            expected[(f"optgate_dp_driver_{k}", None)] = s["driver"][k]
        for i, w in enumerate(s["per_worker"]):
            expected[("optgate_dp_worker_packets", str(i))] = w["packets"]
            expected[("optgate_dp_worker_steered_in", str(i))] = w["steered_in"]
        for d in s["destinations"]:
            expected[("optgate_dp_destination_stripped", d["name"])] = d["identifiers_stripped"]
            expected[("optgate_dp_destination_passed", d["name"])] = d["identifiers_passed"]
        for i in s["identifiers"]:
            expected[("optgate_dp_identifier_stripped", i["name"])] = i["stripped"]
        checked = 0
        for key, value in expected.items():
            if final_scrape.get(key) != value:
                failures.append(f"{key}: scraped {final_scrape.get(key)}, stats file {value}")
            checked += 1
        if s["counters"]["http_rewritten"] == 0:
            failures.append("the sample capture rewrote nothing: the comparison proves little")
    if failures:
        print("\n".join(failures))
        print("stderr:", "".join(err_lines)[-3000:])
        raise SystemExit(1)
    print(f"metrics endpoint: {checked} values equal the stats file's; bad requests answered 4xx")


if __name__ == "__main__":
    main()
