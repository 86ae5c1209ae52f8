#!/usr/bin/env python3
"""Resume benchmark (issue 19, docs/resume.md): `framecast serve --publish --resume`.

  memory   a 100,000-message backlog of 100 B payloads replayed to one resuming client: the
           server's RSS growth during the replay (target: under 16 MiB), beside what the
           history itself costs (RSS growth while it was filled: the same-run baseline)
  latency  a 10,000-message backlog replayed R times: request sent -> last message received,
           p50 / p99 (target: p99 under 50 ms), beside a plain client receiving the same
           10,000 messages live (publish -> last received), the same-run baseline

  log      (--redis; needs redis-server) the same 100,000-message backlog with `--backplane`
           and `--resume-window 100`: all but the newest few hundred are replayed from the
           Redis stream (XRANGE in pieces), not from memory: the server's RSS growth during
           that replay (target: under 16 MiB), beside the in-memory replay's (memory, above)
  channels (--redis) the same with `--channels --resume --backplane`, the node keeping 100
           messages: one channel's 100,000-message backlog, every 10th entry of another
           channel between (read and skipped), replayed from the stream to `RESUME CH EPOCH 0`

Run: bench/resume_replay.py [--bin build/default/bin/framecast] [--repeat R] [--redis]"""
import argparse
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procfs import rss_kib  # noqa: E402

H = 10


def frame(p):
    return f"{len(p):<{H}}".encode() + p


class Reader:
    def __init__(self, sock):
        self.s, self.buf, self.pos = sock, bytearray(), 0

    def read(self):
        while True:
            if len(self.buf) - self.pos >= H:
                n = int(self.buf[self.pos:self.pos + H])
                if len(self.buf) - self.pos >= H + n:
                    p = bytes(self.buf[self.pos + H:self.pos + H + n])
                    self.pos += H + n
                    if self.pos > 1 << 20:
                        del self.buf[:self.pos]
                        self.pos = 0
                    return p
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk


def start(bin_, *args):
    p = subprocess.Popen([bin_, "serve", "--listen", "127.0.0.1:0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    m = re.search(r":(\d+)$", p.stdout.readline().strip())
    return p, int(m.group(1))


def resume(port, rest):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(frame(("@resume " + rest).encode()))
    r = Reader(s)
    while True:
        a = r.read()
        if a.startswith(b"@resumed"):
            return s, r, a.decode().split()


def read_messages(r, n):
    got = 0
    while got < n:
        _, count = r.read().split()
        for _ in range(int(count)):
            r.read()
        got += int(count)


def fill(port, n, size):
    pub = socket.create_connection(("127.0.0.1", port))
    body = b"".join(frame(b"%0*d" % (size, i)) for i in range(n))
    pub.sendall(body)
    return pub


def wait_offset(port, n):
    # A fresh resuming client tells the newest offset in its answer.
    while True:
        s, _, a = resume(port, "probe")
        s.close()
        if int(a[3]) > n:
            return a[2]
        time.sleep(0.01)


def replay_growth(server, r, n, read=None):
    """Reads n replayed messages (`read(r, n)`, read_messages by default) while sampling the
    server's RSS: (peak growth KiB, seconds)."""
    read = read or read_messages
    base = rss_kib(server.pid)
    peak, done = base, threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(server.pid))
            time.sleep(0.002)
    t = threading.Thread(target=sample)
    t.start()
    t0 = time.monotonic()
    read(r, n)
    took = time.monotonic() - t0
    done.set()
    t.join()
    return peak - base, took


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_positioned(r, n):
    """Channels: reads n messages, each piece after its position pair."""
    got = 0
    while got < n:
        assert r.read() == b"$sys.pos"
        count = int(r.read().split()[2])
        for _ in range(2 * count):
            r.read()
        got += count


@contextlib.contextmanager
def redis_port():
    """A redis-server on a free loopback port for the block (its port; None without one)."""
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        yield None
        return
    d = tempfile.mkdtemp(prefix="fc-bench-redis-")
    rport = free_port()
    redis = subprocess.Popen([redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--dir", d,
                              "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        yield rport
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def served(bin_, *args):
    """`framecast serve` for the block: (process, port)."""
    server, port = start(bin_, *args)
    try:
        yield server, port
    finally:
        server.kill()
        server.wait()


def log_memory(bin_, n=100_000):
    with redis_port() as rport:
        if rport is None:
            print("log: skipped (no redis-server)")
            return
        with served(bin_, "--publish", "--resume", "--resume-window", "100",
                    "--backplane", f"redis://127.0.0.1:{rport}/bench") as (server, port):
            time.sleep(0.2)
            for done in range(0, n, 50_000):  # in bursts a publisher's connection takes
                count = min(50_000, n - done)
                pub = fill(port, count, 100)
                epoch = wait_offset(port, done + count)
                pub.close()
            filled = rss_kib(server.pid)
            s, r, answer = resume(port, f"m {epoch} 0")
            assert answer[3:] == ["1", "ok"], answer
            grew, took = replay_growth(server, r, n)
            s.close()
            print(f"log: {n:,} x 100 B backlog in the Redis stream, window 100 (node RSS "
                  f"{filled / 1024:.1f} MiB); replay from Redis raised RSS by "
                  f"{grew / 1024:.2f} MiB (target < 16 MiB); replayed in {took * 1000:.0f} ms")


def channel_log_memory(bin_, n=100_000):
    with redis_port() as rport:
        if rport is None:
            print("channels: skipped (no redis-server)")
            return
        with served(bin_, "--channels", "--resume", "--resume-window", "100", "--resume-total",
                    "100", "--backplane", f"redis://127.0.0.1:{rport}/chbench") as (server, port):
            sub = socket.create_connection(("127.0.0.1", port))
            sub.sendall(frame(b"SUB b.>"))
            sr = Reader(sub)
            assert sr.read() == b"$sys.ok" and sr.read() == b"SUB b.>"
            other = n // 10
            pub = socket.create_connection(("127.0.0.1", port))
            for done in range(0, n, 5_000):
                # 5,000 at a time, each batch back through Redis before the next: under the
                # server's --max-rate (100,000 frames a second) with commands counted.
                body, batch = bytearray(), 0
                for i in range(done, min(n, done + 5_000)):
                    body += frame(b"PUB b.x") + frame(b"%0*d" % (100, i))
                    batch += 1
                    if i % 10 == 0:
                        body += frame(b"PUB b.y") + frame(b"%0*d" % (100, i))
                        batch += 1
                t0 = time.monotonic()
                pub.sendall(bytes(body))
                for _ in range(batch):
                    sr.read()
                    sr.read()
                time.sleep(max(0.0, 2 * batch / 90_000 - (time.monotonic() - t0)))
            sub.close()
            filled = rss_kib(server.pid)
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(frame(b"RESUME"))
            r = Reader(c)
            assert r.read() == b"$sys.ok"
            epoch = r.read().decode().split()[1]
            c.sendall(frame(f"RESUME b.x {epoch} 0".encode()))
            assert r.read() == b"$sys.resumed"
            answer = r.read().decode()
            assert answer.endswith(" 1 ok"), answer
            grew, took = replay_growth(server, r, n, read_positioned)
            c.close()
            pub.close()
            print(f"channels: {n:,} x 100 B backlog of one channel (+{other:,} of another between) "
                  f"in the Redis stream, node window 100 (node RSS {filled / 1024:.1f} MiB); replay "
                  f"from Redis raised RSS by {grew / 1024:.2f} MiB (target < 16 MiB); "
                  f"replayed in {took * 1000:.0f} ms")


def memory(bin_):
    server, port = start(bin_, "--publish", "--resume")
    try:
        time.sleep(0.2)
        idle = rss_kib(server.pid)
        pub = fill(port, 100_000, 100)
        epoch = wait_offset(port, 100_000)
        held = rss_kib(server.pid)
        s, r, _ = resume(port, f"m {epoch} 0")
        grew, took = replay_growth(server, r, 100_000)
        s.close()
        pub.close()
        print(f"memory: 100,000 x 100 B backlog; history costs {(held - idle) / 1024:.1f} MiB RSS "
              f"(baseline); replay raised RSS by {grew / 1024:.2f} MiB "
              f"(target < 16 MiB; ratio to the history {grew / max(held - idle, 1):.3f}); "
              f"replayed in {took * 1000:.0f} ms")
    finally:
        server.kill()
        server.wait()


def latency(bin_, repeat):
    server, port = start(bin_, "--publish", "--resume")
    try:
        # Baseline: a plain client receiving 10,000 live messages (publish -> last received).
        plain = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.2)
        pr = Reader(plain)
        t0 = time.monotonic()
        pub = fill(port, 10_000, 100)
        for _ in range(10_000):
            pr.read()
        live = time.monotonic() - t0
        plain.close()
        epoch = wait_offset(port, 10_000)
        times = []
        for i in range(repeat):
            t0 = time.monotonic()
            s, r, _ = resume(port, f"l{i} {epoch} 0")
            read_messages(r, 10_000)
            times.append(time.monotonic() - t0)
            s.close()
        pub.close()
        times.sort()
        p50 = statistics.median(times) * 1000
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
        print(f"latency: 10,000-message backlog replayed {repeat} times: p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms (target p99 < 50 ms); the same 10,000 received live by a plain "
              f"client: {live * 1000:.1f} ms (baseline; p99 / baseline {p99 / (live * 1000):.2f})")
    finally:
        server.kill()
        server.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(here, "..", "build", "default", "bin", "framecast"))
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--redis", action="store_true", help="also the replay from a Redis stream")
    ap.add_argument("--log-messages", type=int, default=100_000,
                    help="--redis: the backlog (a larger one shows the growth does not follow it)")
    a = ap.parse_args()
    memory(a.bin)
    if a.redis:
        log_memory(a.bin, a.log_messages)
        channel_log_memory(a.bin, a.log_messages)
    latency(a.bin, a.repeat)


if __name__ == "__main__":
    main()
