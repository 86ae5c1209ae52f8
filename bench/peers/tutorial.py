#!/usr/bin/env python3
"""The tutorial's Python implementation as a benchmark peer: what moving to framecast buys.

Framing as in the seed (buffering-and-streaming.md): f"{len(msg):<{HEADERSIZE}}" + msg, one
socket.send per message, s.recv(16) on the reading side. One change: the tutorial's client
assumes a recv never holds the end of one message and the start of the next, which stops being
true as soon as messages come back to back; here the bytes past a message are kept for the next
one (and gathered in a bytearray, since bytes += bytes copies the whole message every 16 bytes).

    tutorial.py recv --listen 127.0.0.1:0 --size N --count M      prints the throughput result
    tutorial.py send --connect HOST:PORT --size N --count M
    tutorial.py echo --listen 127.0.0.1:0
    tutorial.py ping --connect HOST:PORT --size N --count M [--warmup W] [--samples FILE]
"""
import json
import socket
import sys
import time

HEADERSIZE = 10
BUFSIZE = 16
SYSTEM = "tutorial-python"


def options(argv):
    opts = {"mode": argv[1]}
    for key, value in zip(argv[2::2], argv[3::2]):
        opts[key.lstrip("-")] = value
    return opts


def listen(text):
    host, port = text.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(5)
    print(f"listening on {host}:{s.getsockname()[1]}", flush=True)
    conn, _ = s.accept()
    return conn


def connect(text):
    host, port = text.rsplit(":", 1)
    for _ in range(100):
        try:
            return socket.create_connection((host, int(port)))
        except ConnectionRefusedError:
            time.sleep(0.02)
    raise SystemExit("tutorial.py: connect failed")


class Reader:
    """The tutorial client's loop (new_msg, msglen, full_msg), keeping bytes past a message."""

    def __init__(self, sock):
        self.s = sock
        self.full_msg = bytearray()

    def read(self):
        new_msg = True
        msglen = 0
        while True:
            if new_msg and len(self.full_msg) >= HEADERSIZE:
                msglen = int(self.full_msg[:HEADERSIZE])
                new_msg = False
            if not new_msg and len(self.full_msg) - HEADERSIZE >= msglen:
                msg = bytes(self.full_msg[HEADERSIZE:HEADERSIZE + msglen])
                del self.full_msg[:HEADERSIZE + msglen]
                return msg
            chunk = self.s.recv(BUFSIZE)
            if not chunk:
                return None
            self.full_msg += chunk


def frame(msg):
    return bytes(f"{len(msg):<{HEADERSIZE}}", "utf-8") + msg


def main():
    o = options(sys.argv)
    size = int(o.get("size", 100))
    count = int(o.get("count", 10000))
    mode = o["mode"]
    if mode == "recv":
        conn = listen(o.get("listen", "127.0.0.1:0"))
        reader = Reader(conn)
        start = None
        for _ in range(count):
            msg = reader.read()
            if start is None:
                start = time.monotonic()
            if msg is None or len(msg) != size:
                raise SystemExit("tutorial.py recv: stream ended early")
        secs = time.monotonic() - start
        print(json.dumps({"system": SYSTEM, "scenario": "throughput", "size": size,
                          "count": count, "seconds": secs, "msgs_per_s": count / secs,
                          "mb_per_s": count * size / secs / 1e6}), flush=True)
    elif mode == "send":
        s = connect(o["connect"])
        data = frame(b"x" * size)
        for _ in range(count):
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # until the receiver closes
    elif mode == "echo":
        conn = listen(o.get("listen", "127.0.0.1:0"))
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = Reader(conn)
        while (msg := reader.read()) is not None:
            conn.sendall(frame(msg))
    elif mode == "ping":
        s = connect(o["connect"])
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = Reader(s)
        data = frame(b"x" * size)
        warmup = int(o.get("warmup", 100))
        us = []
        for i in range(warmup + count):
            t0 = time.perf_counter_ns()
            s.sendall(data)
            if reader.read() is None:
                raise SystemExit("tutorial.py ping: peer closed")
            if i >= warmup:
                us.append((time.perf_counter_ns() - t0) / 1e3)
        if o.get("samples"):
            with open(o["samples"], "w") as f:
                f.writelines(f"{v:.3f}\n" for v in us)
        us.sort()

        def pct(p):
            return us[min(int(p / 100 * len(us)), len(us) - 1)]
        print(json.dumps({"system": SYSTEM, "scenario": "pingpong", "size": size,
                          "count": len(us), "mean_us": sum(us) / len(us), "p50_us": pct(50),
                          "p99_us": pct(99), "p999_us": pct(99.9), "max_us": us[-1],
                          "msgs_per_s": 1e6 * len(us) / sum(us)}), flush=True)
    else:
        raise SystemExit(f"tutorial.py: unknown mode {mode}")


if __name__ == "__main__":
    main()
