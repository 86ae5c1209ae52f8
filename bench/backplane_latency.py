#!/usr/bin/env python3
"""Latency and throughput of framecast serve --publish with and without --backplane (Redis).

Latency: one publisher sends a 100-byte message stamped with time.perf_counter_ns() every
`--gap` seconds; a subscriber on the same node reads it and records now - stamp. Throughput:
the publisher sends `--burst` messages as fast as it can; msgs/s = burst / (time until the
subscriber has all of them). With --chat the node is a chat room instead (usernames first, relays of
username + message; a read's relays are one backplane entry, as a --publish read is). Needs redis-server
on PATH; loopback only. With --resume a third node runs `--resume --backplane` (the stream
numbers the messages: one Lua script per append, docs/resume.md "Several nodes") and its
line is compared with the plain backplane's.

  bench/backplane_latency.py --bin build/default/bin/framecast
"""
import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from loopback import free_port  # beside this file

H = 10


def frame(p):
    return f"{len(p):<{H}}".encode() + p


class Reader:
    def __init__(self, sock):
        self.s, self.buf = sock, bytearray()

    def read(self):
        while True:
            if len(self.buf) >= H:
                n = int(self.buf[:H])
                if len(self.buf) >= H + n:
                    p = bytes(self.buf[H:H + n])
                    del self.buf[:H + n]
                    return p
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk


def start_node(binary, extra, chat=False):
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--chat" if chat else "--publish",
                          "--welcome", "",
                          "--client-buffer", "256MiB", "-q", "--max-rate", "0", "--max-rate-bytes", "0", "--max-per-address", "0", "--memory-limit", "0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    return p, int(re.search(r":(\d+)$", line.strip()).group(1))


def measure(port, count, gap, burst, chat=False):
    sub = socket.create_connection(("127.0.0.1", port))
    pub = socket.create_connection(("127.0.0.1", port))
    if chat:  # usernames first; the subscriber then receives (username, message) pairs
        sub.sendall(frame(b"sub"))
        pub.sendall(frame(b"pub"))
    sub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    time.sleep(0.3)
    r = Reader(sub)
    lat = []
    for _ in range(count):
        p = str(time.perf_counter_ns()).encode().ljust(100, b"x")
        pub.sendall(frame(p))
        if chat:
            r.read()
        got = r.read()
        lat.append((time.perf_counter_ns() - int(got[:got.index(b"x")])) / 1e3)
        time.sleep(gap)
    lat.sort()
    done = threading.Event()

    def drain():
        for _ in range(burst * (2 if chat else 1)):
            r.read()
        done.set()
    t = threading.Thread(target=drain, daemon=True)
    payload = frame(b"y" * 100)
    t0 = time.perf_counter()
    t.start()
    chunk = payload * 500
    for _ in range(burst // 500):
        pub.sendall(chunk)
    done.wait(300)
    rate = burst / (time.perf_counter() - t0)
    sub.close()
    pub.close()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)], rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/default/bin/framecast")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--gap", type=float, default=0.001)
    ap.add_argument("--burst", type=int, default=100_000)
    ap.add_argument("--chat", action="store_true", help="a chat room instead of --publish")
    ap.add_argument("--resume", action="store_true",
                    help="also --resume --backplane (offsets from the stream); not with --chat")
    a = ap.parse_args()
    redis = shutil.which("redis-server")
    if not redis:
        sys.exit("redis-server not found")
    with tempfile.TemporaryDirectory() as d:
        rport = free_port()
        rp = subprocess.Popen([redis, "--port", str(rport), "--bind", "127.0.0.1", "--dir", d,
                               "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        results = {}
        runs = [("single node", []),
                ("backplane", ["--backplane", f"redis://127.0.0.1:{rport}/bench"])]
        if a.resume:
            runs.append(("bp --resume", ["--resume", "--backplane",
                                         f"redis://127.0.0.1:{rport}/bench-resume"]))
        for name, extra in runs:
            p, port = start_node(a.bin, extra, a.chat)
            try:
                results[name] = measure(port, a.count, a.gap, a.burst, a.chat)
            finally:
                p.terminate()
                p.wait()
        rp.terminate()
        rp.wait()
    for name, (p50, p99, rate) in results.items():
        print(f"{name:12s} p50 {p50:8.1f} us  p99 {p99:8.1f} us  {rate:10.0f} msgs/s")
    s, b = results["single node"], results["backplane"]
    print(f"ratio backplane/single: p50 x{b[0] / s[0]:.1f}, p99 x{b[1] / s[1]:.1f}, "
          f"throughput x{b[2] / s[2]:.2f}")
    if "bp --resume" in results:
        r = results["bp --resume"]
        print(f"ratio backplane --resume/backplane: p50 x{r[0] / b[0]:.2f}, p99 x{r[1] / b[1]:.2f}, "
              f"throughput x{r[2] / b[2]:.2f}")


if __name__ == "__main__":
    main()
