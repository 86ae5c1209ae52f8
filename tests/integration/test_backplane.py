"""framecast serve --backplane: several nodes share one stream through a real redis-server
(started here on a free loopback port, in a temp dir, with an fsync'd append-only file)."""
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from framecast_test import DEADLINE, FrameReader, connect, frame

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, tmp_path):
        self.dir, self.port, self.p = tmp_path, free_port(), None

    def start(self):
        self.p = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.terminate()
            self.p.wait(timeout=DEADLINE)

    def url(self, key="framecast"):
        return f"redis://127.0.0.1:{self.port}/{key}"


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    r.start()
    yield r
    if r.p and r.p.poll() is None:
        r.p.kill()
        r.p.wait()


def join(port, name):
    s = connect(port)
    s.sendall(frame(name))
    return s


def test_three_chat_nodes_share_one_room_in_one_order(procs, redis):
    nodes = [procs.serve("--chat", "--backplane", redis.url("chat")) for _ in range(3)]
    names = [f"user{i}" for i in range(6)]
    clients = [join(nodes[i % 3][1], n) for i, n in enumerate(names)]
    readers = [FrameReader(c) for c in clients]
    for p, _ in nodes:
        p.wait_for(rb"joined from[\s\S]*joined from")  # both of its clients

    per_client = 20
    threads = []
    for i, c in enumerate(clients):
        def talk(c=c, i=i):
            for k in range(per_client):
                c.sendall(frame(f"m{i}-{k}"))
        threads.append(threading.Thread(target=talk))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = per_client * len(clients)
    seen = []
    for i, r in enumerate(readers):
        got = []
        # A chat client does not receive its own messages.
        for _ in range(total - per_client):
            user, msg = r.read(), r.read()
            got.append((user.decode(), msg.decode()))
        assert all(u != names[i] for u, _ in got)
        mine = [m for u, m in got if u == names[(i + 1) % len(names)]]
        assert mine == [f"m{(i + 1) % len(names)}-{k}" for k in range(per_client)]
        seen.append(got)
    # One order: any two clients saw the same sequence once each one's own messages (which
    # it does not receive) are removed from the other's.
    for i, got in enumerate(seen):
        for j, other in enumerate(seen):
            if i < j:
                assert [x for x in got if x[0] != names[j]] == [x for x in other if x[0] != names[i]]
    for c in clients:
        c.close()


PUBLISHER = r'''
import socket, sys, time
port, start, count, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection(("127.0.0.1", port))
out = bytearray()
for i in range(start, start + count):
    p = f"seq {i:08d} ".encode().ljust(100, b"x")
    out += f"{len(p):<10}".encode() + p
    if len(out) > 32768:
        s.sendall(out); out.clear(); time.sleep(pause)
s.sendall(out)
time.sleep(0.5)
s.close()
'''


class Collector:
    """A subscriber reading sequence-numbered messages in the background."""

    def __init__(self, port):
        self.sock = connect(port)
        self.reader = FrameReader(self.sock)
        self.seqs, self.error = [], None
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        rx = re.compile(rb"seq (\d{8}) ")
        try:
            while True:
                m = rx.match(self.reader.read(timeout=60))
                if m:
                    self.seqs.append(int(m.group(1)))
        except (EOFError, OSError, socket.timeout) as e:
            self.error = e

    def wait_for(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.seqs) < n and time.monotonic() < deadline and self.t.is_alive():
            time.sleep(0.05)
        return len(self.seqs)


def check_sequences(collectors, total):
    orders = []
    for c in collectors:
        c.wait_for(total)
        time.sleep(0.3)  # a duplicate would arrive about now
        assert len(c.seqs) == total, f"got {len(c.seqs)} of {total} (error {c.error!r})"
        assert sorted(c.seqs) == list(range(total)), "missing or duplicated messages"
        orders.append(c.seqs)
    assert all(o == orders[0] for o in orders), "nodes delivered in different orders"


def run_publish_scenario(procs, redis, total, disruption=None, pause=0.002):
    args = ["--publish", "--welcome", "", "--backplane", redis.url("pub"),
            "--client-buffer", "64MiB"]
    nodes = [procs.serve(*args, "--metrics", "127.0.0.1:0") for _ in range(3)]
    collectors = [Collector(port) for _, port in nodes for _ in range(2)]
    time.sleep(0.3)
    half = total // 2
    pubs = [procs.python(PUBLISHER, nodes[0][1], 0, half, pause),
            procs.python(PUBLISHER, nodes[1][1], half, total - half, pause)]
    if disruption:
        disruption()
    for p in pubs:
        assert p.wait(timeout=60) == 0
    check_sequences(collectors, total)
    return nodes


def metrics_of(proc):
    m = proc.wait_for(rb"metrics on (http://\S+/metrics)", stream="out")
    with urllib.request.urlopen(m.group(1).decode(), timeout=5) as r:
        return r.read().decode()


def test_ten_thousand_messages_across_nodes_none_missing_or_duplicated(procs, redis):
    nodes = run_publish_scenario(procs, redis, 10_000)
    text = metrics_of(nodes[2][0])
    assert re.search(r"^framecast_backplane_up 1$", text, re.M), text
    # Every message entered node 2's broadcast once; entries may carry several (a publisher's
    # read is one entry), never more entries than messages.
    assert re.search(r"^framecast_messages_broadcast_total 10000$", text, re.M), text
    entries = int(re.search(r"^framecast_backplane_delivered_total (\d+)$", text, re.M).group(1))
    assert 1 <= entries <= 10000, text


def test_redis_restart_mid_stream_loses_nothing(procs, redis):
    def restart():
        time.sleep(1)
        redis.stop()
        time.sleep(3)
        redis.start()
    # The publishers send for about 5 s (300 messages every 0.3 s each), Redis is away from
    # 1 s to 4 s.
    nodes = run_publish_scenario(procs, redis, 10_000, disruption=restart, pause=0.3)
    deadline = time.monotonic() + DEADLINE
    while True:
        text = metrics_of(nodes[0][0])
        if re.search(r"^framecast_backplane_up 1$", text, re.M) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert re.search(r"^framecast_backplane_up 1$", text, re.M), text
    assert re.search(r"^framecast_backplane_reconnects_total [1-9]", text, re.M), text


def test_stdin_source_waits_for_its_messages_to_come_back(procs, redis):
    sub_node, sub_port = procs.serve("--source", "none", "--welcome", "",
                                     "--backplane", redis.url("stdin"))
    collector = Collector(sub_port)
    src, src_port = procs.serve("--source", "stdin", "--welcome", "",
                                "--backplane", redis.url("stdin"), stdin=subprocess.PIPE)
    local = Collector(src_port)
    time.sleep(0.3)
    src.p.stdin.write(b"".join(f"seq {i:08d} \n".encode() for i in range(2000)))
    src.p.stdin.close()
    assert src.wait(timeout=DEADLINE) == 0
    check_sequences([collector, local], 2000)


def test_redis_down_at_start_serves_local_clients(procs, tmp_path):
    port = free_port()
    node, node_port = procs.serve("--welcome", "hello", "--backplane",
                                  f"redis://127.0.0.1:{port}/k", "--interval", "0.2")
    node.wait_for(rb"not reachable yet")
    s = connect(node_port)
    r = FrameReader(s)
    assert r.read() == b"hello"
    assert r.read().startswith(b"The time is")  # the clock is per node by default


def test_backplane_options_need_backplane(procs):
    p = procs.framecast("serve", "--backplane-retention", "10")
    assert p.wait() != 0
    p = procs.framecast("serve", "--backplane", "http://nope")
    assert p.wait() != 0
