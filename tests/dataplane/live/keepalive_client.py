#!/usr/bin/env python3
"""The live test's keep-alive client: one TCP connection to the server for
its whole life, one request per line of stdin, so the test can change
consent between requests on the same connection.

Each stdin line is JSON {"path": "/...", "uidh": "..."}: a GET with that
X-UIDH value. Each answer is one JSON line on stdout: {"status", "local_port",
"body"} or {"error"}. The connection is never silently reopened
(http.client would otherwise reconnect after a close): a closed connection
is an error.

usage: keepalive_client.py HOST PORT
"""
import http.client
import json
import sys


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.connect()
    conn.auto_open = 0  # never reconnect: the test is about one connection
    local_port = conn.sock.getsockname()[1]
    print(json.dumps({"connected": True, "local_port": local_port}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if conn.sock is None or conn.sock.getsockname()[1] != local_port:
                raise ConnectionError("the keep-alive connection was closed")
            conn.request("GET", req["path"], headers={"X-UIDH": req["uidh"]})
            r = conn.getresponse()
            body = r.read().decode()
            if r.getheader("Connection", "").lower() == "close":
                raise ConnectionError("the server closed the keep-alive connection")
            out = {"status": r.status, "local_port": conn.sock.getsockname()[1], "body": body}
        except Exception as e:  # report, let the test decide
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
