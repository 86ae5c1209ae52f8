#!/usr/bin/env python3
"""Soak test for `framecast serve --publish` (issue 7): steady publishers and subscribers for
a quarter hour (by default), on loopback.

Each publisher sends `p<id> <seq>` frames at a steady rate; the server relays each to every
other client. Every subscriber, and every publisher for the others' streams, checks that each
publisher's sequence arrives complete, in order, once. Prints the server's RSS over time and,
at the end, messages delivered and missed (must be 0); exits 1 if anything was missed,
duplicated or reordered, or the server did not exit 0 on SIGTERM.

    bench/soak.py --bin build/default/bin/framecast                  # 15 minutes
    bench/soak.py --bin build/default/bin/framecast --duration 180   # 3 minutes
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from procfs import rss_kib  # bench/procfs.py, beside this script


def frame(payload):
    return b"%-10d" % len(payload) + payload


class Receiver:
    """Reads frames from one connection in a thread and checks each publisher's sequence."""

    def __init__(self, port, name):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.name = name
        self.next = {}          # publisher id -> next expected seq
        self.delivered = self.missed = self.duplicated = 0
        self.error = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _on_frame(self, payload):
        pub, seq = payload.split(b" ", 2)[:2]
        seq = int(seq)
        with self.lock:
            expected = self.next.get(pub, 0)
            if seq == expected:
                self.delivered += 1
            elif seq > expected:
                self.delivered += 1
                self.missed += seq - expected
            else:
                self.duplicated += 1
            self.next[pub] = max(expected, seq + 1)

    def _run(self):
        buf, pos = bytearray(), 0
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return
                buf += chunk
                while len(buf) - pos >= 10:
                    n = int(buf[pos:pos + 10])
                    if len(buf) - pos < 10 + n:
                        break
                    self._on_frame(bytes(buf[pos + 10:pos + 10 + n]))
                    pos += 10 + n
                del buf[:pos]
                pos = 0
        except OSError as e:
            if not isinstance(e, socket.timeout):
                self.error = e
        except Exception as e:  # noqa: BLE001 - reported at the end
            self.error = e


class Publisher(Receiver):
    def __init__(self, port, pid, rate, size):
        super().__init__(port, f"publisher {pid}")
        self.id, self.rate, self.size, self.sent = b"p%d" % pid, rate, size, 0
        self.stop = threading.Event()
        self.writer = threading.Thread(target=self._write, daemon=True)

    def start(self):
        super().start()
        self.writer.start()

    def _write(self):
        period = 0.01
        per_tick = max(1, round(self.rate * period))
        pad = b"x" * max(0, self.size - 20)
        next_t = time.monotonic()
        while not self.stop.is_set():
            self.sock.sendall(b"".join(frame(b"%s %d %s" % (self.id, self.sent + i, pad))
                                       for i in range(per_tick)))
            self.sent += per_tick
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("FRAMECAST_BIN", "framecast"))
    ap.add_argument("--duration", type=float, default=900, help="seconds (default 900)")
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--subscribers", type=int, default=16)
    ap.add_argument("--rate", type=float, default=250, help="messages/s per publisher")
    ap.add_argument("--size", type=int, default=64, help="bytes per message (at least ~20)")
    ap.add_argument("--samples", type=int, default=15, help="rows in the RSS table")
    args = ap.parse_args()

    server = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--publish",
                               "--welcome", "", "--quiet", "--max-rate", "0", "--max-rate-bytes", "0", "--max-per-address", "0", "--memory-limit", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = server.stdout.readline().decode()
    port = int(line.rsplit(":", 1)[1])
    subs = [Receiver(port, f"subscriber {i}") for i in range(args.subscribers)]
    pubs = [Publisher(port, i, args.rate, args.size) for i in range(args.publishers)]
    time.sleep(0.5)  # every client accepted before the first message
    for r in subs + pubs:
        r.start()

    t0 = time.monotonic()
    rss0 = rss_kib(server.pid)
    print(f"soak: {args.publishers} publishers x {args.rate:g} msg/s, {args.subscribers} subscribers,"
          f" {args.size}-byte messages, {args.duration:g} s; server pid {server.pid}")
    print(f"{'t (s)':>8} {'RSS (KiB)':>10} {'delivered':>12} {'missed':>7}")
    print(f"{0:8.0f} {rss0:10d} {0:12d} {0:7d}")
    rows = [(0.0, rss0)]
    every = args.duration / args.samples
    while (elapsed := time.monotonic() - t0) < args.duration:
        time.sleep(min(every, args.duration - elapsed))
        t, rss = time.monotonic() - t0, rss_kib(server.pid)
        delivered = sum(r.delivered for r in subs + pubs)
        missed = sum(r.missed for r in subs + pubs)
        rows.append((t, rss))
        print(f"{t:8.0f} {rss:10d} {delivered:12d} {missed:7d}", flush=True)
        if server.poll() is not None:
            break

    for p in pubs:
        p.stop.set()
    for p in pubs:
        p.writer.join(timeout=10)
    sent = {p.id: p.sent for p in pubs}
    # Wait until every receiver has every other publisher's last message.
    deadline = time.monotonic() + 60
    receivers = subs + pubs

    def owed(r):
        return sum(n - r.next.get(pid, 0) for pid, n in sent.items()
                   if not (isinstance(r, Publisher) and r.id == pid))

    while time.monotonic() < deadline and any(owed(r) > 0 for r in receivers):
        time.sleep(0.1)
    server.send_signal(signal.SIGTERM)
    try:
        _, err = server.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        _, err = server.communicate()
    for r in receivers:
        r.thread.join(timeout=10)

    expected = sum(sent.values()) * (len(subs) + len(pubs) - 1)
    delivered = sum(r.delivered for r in receivers)
    missed = sum(r.missed + max(0, owed(r)) for r in receivers)
    duplicated = sum(r.duplicated for r in receivers)
    errors = [f"{r.name}: {r.error!r}" for r in receivers if r.error]
    print(f"\npublished {sum(sent.values())} messages; expected deliveries {expected}; "
          f"delivered {delivered}; missed {missed}; duplicated/reordered {duplicated}")
    print(f"server RSS: start {rows[0][1]} KiB, peak {max(k for _, k in rows)} KiB, "
          f"end {rows[-1][1]} KiB; server exit code {server.returncode}")
    if errors:
        print("receiver errors:", *errors, sep="\n  ")
    if server.returncode != 0 or err.strip():
        print("server stderr (tail):", err.decode(errors="replace")[-2000:], sep="\n")
    ok = missed == 0 and duplicated == 0 and delivered == expected and not errors \
        and server.returncode == 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
