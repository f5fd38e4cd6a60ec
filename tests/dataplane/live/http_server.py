#!/usr/bin/env python3
"""The live test's HTTP server: HTTP/1.1 with keep-alive, one JSON line per
request in LOG (path, client port, headers as received), written before the
response goes out, so a client that has its response finds its record.

usage: http_server.py ADDRESS PORT LOG READY_FILE
"""
import http.server
import json
import sys
import threading
import time

_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the test reuses one connection

    def do_GET(self):  # noqa: N802 (http.server's naming)
        record = {"time": time.time(), "path": self.path, "client": list(self.client_address),
                  "request_line": self.requestline, "headers": [[k, v] for k, v in self.headers.items()]}
        with _lock, open(self.server.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass  # the JSON log is the record


def main():
    address, port, log_path, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    # Threads: the test holds a keep-alive connection open while curl makes others.
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    server.log_path = log_path
    with open(ready, "w") as f:
        f.write("ready\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
