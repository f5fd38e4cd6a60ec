#!/usr/bin/env python3
"""The live test's DNS responder: answers every query NOERROR with one A
record (its own address) and appends one JSON line per query to LOG: the
query id, the name, whether it had an OPT record and that record's EDNS0
options (code and data, hex) as they arrived, and the transport. It serves
UDP and TCP (RFC 1035 4.2.2: each message after its 2-byte length) on the
same port.

Parsed here rather than with scapy: scapy 2.5 reads everything after an
EDNS client subnet option as that option's payload, so the options after it
(dig's cookie) would go missing from the record.

usage: dns_server.py ADDRESS PORT LOG READY_FILE
"""
import json
import socket
import struct
import sys
import threading
import time


def skip_name(msg, pos):
    """Position after the (uncompressed, or pointer-ended) name at pos."""
    while True:
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n


def read_name(msg, pos):
    labels = []
    while msg[pos] != 0:
        n = msg[pos]
        labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    return ".".join(labels) + "."


def parse_query(msg):
    qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", msg, 0)
    if qd != 1:
        raise ValueError(f"{qd} questions")
    name = read_name(msg, 12)
    question_end = skip_name(msg, 12) + 4
    pos, opt = question_end, None
    for _ in range(an + ns + ar):
        pos = skip_name(msg, pos)
        rtype, _rclass, _ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        if rtype == 41:  # OPT
            options, o = [], pos
            while o + 4 <= pos + rdlen:
                code, length = struct.unpack_from("!HH", msg, o)
                options.append([code, msg[o + 4:o + 4 + length].hex()])
                o += 4 + length
            opt = options
        pos += rdlen
    return qid, flags, name, msg[12:question_end], opt


def answer(qid, flags, question, address):
    # QR, AA, RD copied; NOERROR; one A record pointing at the question's name.
    header = struct.pack("!6H", qid, 0x8400 | (flags & 0x0100), 1, 1, 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(address)
    return header + question + record


LOG_LOCK = threading.Lock()


def handle(msg, peer, address, log_path, transport):
    """Logs one query; returns the reply, or None."""
    try:
        qid, flags, name, question, opt = parse_query(msg)
    except (ValueError, IndexError, struct.error) as e:
        record = {"time": time.time(), "client": list(peer), "error": str(e), "raw": msg.hex()}
        reply = None
    else:
        record = {"time": time.time(), "client": list(peer), "id": qid, "name": name,
                  "edns": opt is not None, "options": opt or []}
        reply = answer(qid, flags, question, address)
    record["transport"] = transport
    with LOG_LOCK, open(log_path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return reply


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve_tcp(listener, address, log_path):
    while True:
        conn, peer = listener.accept()
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    prefix = read_exactly(conn, 2)
                    if prefix is None:
                        break
                    msg = read_exactly(conn, struct.unpack("!H", prefix)[0])
                    if msg is None:
                        break
                    reply = handle(msg, peer, address, log_path, "tcp")
                    if reply:
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:
                pass


def main():
    address, port, log_path, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, port))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(16)
    threading.Thread(target=serve_tcp, args=(listener, address, log_path), daemon=True).start()
    with open(ready, "w") as f:
        f.write("ready\n")
    while True:
        msg, peer = s.recvfrom(4096)
        reply = handle(msg, peer, address, log_path, "udp")
        if reply:
            s.sendto(reply, peer)


if __name__ == "__main__":
    main()
