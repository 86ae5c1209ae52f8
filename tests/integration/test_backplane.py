"""framecast serve --backplane: several nodes share one stream through a real redis-server
(started here on a free loopback port, in a temp dir, with an fsync'd append-only file)."""
import re
import socket
import subprocess
import threading
import time

import pytest

from redis_server import REDIS
from framecast_test import (DEADLINE, FrameReader, connect, frame, free_port, metrics_url, scrape,
                            wait_for_log, wait_for_metric, wait_until)

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")


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


# Sends `count` sequence-numbered messages at a pace, then half-closes and reads until the server
# closes: that is, until the server has read every message (and discards what it relays back).
PUBLISHER = r'''
import os, socket, sys, time
port, start, count, pause = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
gate = sys.argv[5] if len(sys.argv) > 5 else None  # halfway, wait until this file exists
s = socket.create_connection(("127.0.0.1", port))
out = bytearray()
for i in range(start, start + count):
    p = f"seq {i:08d} ".encode().ljust(100, b"x")
    out += f"{len(p):<10}".encode() + p
    if len(out) > 32768:
        s.sendall(out); out.clear(); time.sleep(pause)  # the publishing pace (not synchronisation)
    if gate and i == start + count // 2:
        s.sendall(out); out.clear()
        while not os.path.exists(gate):
            time.sleep(0.01)  # the test opens the gate (an event: a file)
s.sendall(out)
s.shutdown(socket.SHUT_WR)
s.settimeout(60)
try:
    while s.recv(1 << 16):
        pass
except ConnectionResetError:
    pass
s.close()
'''

# Published after everything else: once it reached a collector, so did anything before it in the
# backplane's one order, a duplicate included. It is no `seq` message, so no count includes it.
MARKER = b"end of the test's messages"


class Collector:
    """A subscriber reading sequence-numbered messages in the background."""

    def __init__(self, port):
        self.sock = connect(port)
        self.reader = FrameReader(self.sock)
        self.seqs, self.error = [], None
        self.marker = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        rx = re.compile(rb"seq (\d{8}) ")
        try:
            while True:
                payload = self.reader.read(timeout=60)
                m = rx.match(payload)
                if m:
                    self.seqs.append(int(m.group(1)))
                elif payload == MARKER:
                    self.marker.set()
        except (EOFError, OSError, socket.timeout) as e:
            self.error = e

    def wait_for(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while len(self.seqs) < n and time.monotonic() < deadline and self.t.is_alive():
            time.sleep(0.05)  # poll interval (bounded above)
        return len(self.seqs)


def check_sequences(collectors, total, send_marker=None, sources=None):
    """Checks every collector got 0..total-1 once, all in one order, and each source's
    messages (`sources`: [start, end) ranges, one per publisher; default one source) in the
    order it sent them. Waits for `total` messages, then (after send_marker(), if the marker is
    not on its way already) for MARKER: nothing published before it, a duplicate included, can
    arrive later."""
    for c in collectors:
        c.wait_for(total)
    if send_marker:
        send_marker()
    orders = []
    for i, c in enumerate(collectors):
        if not c.marker.wait(DEADLINE):
            raise AssertionError(f"timed out after {DEADLINE} s waiting for the end marker at "
                                 f"collector {i} (error {c.error!r}, {len(c.seqs)} messages)")
        assert len(c.seqs) == total, f"got {len(c.seqs)} of {total} (error {c.error!r})"
        assert sorted(c.seqs) == list(range(total)), "missing or duplicated messages"
        for start, end in sources or [(0, total)]:
            mine = [q for q in c.seqs if start <= q < end]
            assert mine == sorted(mine), f"collector {i}: messages {start}..{end - 1} out of order"
        orders.append(c.seqs)
    assert all(o == orders[0] for o in orders), "nodes delivered in different orders"


def publish_marker(nodes):
    """Publishes MARKER through node 0 once no node holds anything still to append (so it
    enters the backplane after every message), and returns when node 0 has read it."""
    for proc, _ in nodes:
        wait_for_metric(proc, "framecast_backplane_pending", 0)
    s = connect(nodes[0][1])
    s.sendall(frame(MARKER))
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(1 << 16):  # the server closes once it has read the marker
            pass
    except ConnectionResetError:
        pass
    s.close()


def run_publish_scenario(procs, redis, total, disruption=None, pause=0.002, gate=None):
    """Returns the nodes and the /metrics text of each, taken once every collector has all
    `total` messages (before the end marker, which would count as one more message)."""
    args = ["--publish", "--welcome", "", "--backplane", redis.url("pub"),
            "--client-buffer", "64MiB"]
    nodes = [procs.serve(*args, "--metrics", "127.0.0.1:0") for _ in range(3)]
    collectors = [Collector(port) for _, port in nodes for _ in range(2)]
    for p, _ in nodes:  # each node's collectors admitted: they get whatever is published next
        wait_for_log(p, rb"connected \(2 clients\)")
    half = total // 2
    gated = [str(gate)] if gate else []
    pubs = [procs.python(PUBLISHER, nodes[0][1], 0, half, pause, *gated),
            procs.python(PUBLISHER, nodes[1][1], half, total - half, pause, *gated)]
    if disruption:
        disruption(nodes, collectors)
    for p in pubs:
        assert p.wait(timeout=60) == 0
    texts = []

    def snapshot_then_marker():
        texts.extend(metrics_of(p) for p, _ in nodes)
        publish_marker(nodes)

    check_sequences(collectors, total, send_marker=snapshot_then_marker,
                    sources=[(0, half), (half, total)])
    return nodes, texts


def metrics_of(proc):
    return scrape(metrics_url(proc))[1]


def test_ten_thousand_messages_across_nodes_none_missing_or_duplicated(procs, redis):
    nodes, texts = run_publish_scenario(procs, redis, 10_000)
    text = texts[2]
    assert re.search(r"^framecast_backplane_up 1$", text, re.M), text
    # Every message entered node 2's broadcast once; entries may carry several (a publisher's
    # read is one entry), never more entries than messages.
    assert re.search(r"^framecast_messages_broadcast_total 10000$", text, re.M), text
    entries = int(re.search(r"^framecast_backplane_delivered_total (\d+)$", text, re.M).group(1))
    assert 1 <= entries <= 10000, text


def test_redis_restart_mid_stream_loses_nothing(procs, redis, tmp_path):
    gate = tmp_path / "go-on"

    def restart(nodes, collectors):
        # Mid-stream: each publisher sent half of its messages and waits at the gate; they
        # flowed through Redis to every collector ...
        wait_until(lambda: min(len(c.seqs) for c in collectors) >= 2 * 2501,
                   lambda: f"the first halves at every collector before stopping Redis "
                           f"(have {[len(c.seqs) for c in collectors]})")
        redis.stop()
        # ... then every node has noticed Redis is gone; the publishers go on, and the
        # publishing nodes hold what they send.
        for p, _ in nodes:
            wait_for_metric(p, "framecast_backplane_up", 0)
        gate.touch()
        for p, _ in nodes[:2]:
            wait_for_metric(p, "framecast_backplane_pending", lambda v: v > 0, what="> 0")
        redis.start()
    # Events, not a pace: Redis goes away between the halves and comes back once the nodes
    # hold messages for it (on a loaded machine a timed pace could end before Redis was gone).
    nodes, _ = run_publish_scenario(procs, redis, 10_000, disruption=restart, gate=gate)
    wait_for_metric(nodes[0][0], "framecast_backplane_up", 1)
    text = metrics_of(nodes[0][0])
    assert re.search(r"^framecast_backplane_up 1$", text, re.M), text
    assert re.search(r"^framecast_backplane_reconnects_total [1-9]", text, re.M), text


# Busy for ARGV[1] microseconds: Redis answers other clients BUSY meanwhile (past
# busy-reply-threshold), and serves them again the moment it ends.
BUSY_SCRIPT = ("local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] "
               "while true do local t = redis.call('TIME') "
               "if t[1] * 1000000 + t[2] - t0 > tonumber(ARGV[1]) then return 1 end end")


def test_redis_busy_mid_batch_loses_nothing_and_keeps_each_publishers_order(procs, redis):
    # A script that ends while Redis reads a node's pipelined batch leaves that batch refused
    # (BUSY) in its first part and appended in the rest. Appended apart, the refused part
    # would land after the rest on its retry, and readers would skip it as already seen.
    # A batch is one transaction: it lands whole or is retried whole.
    assert redis.command("CONFIG", "SET", "busy-reply-threshold", "5").startswith(b"+OK")

    def busy_rounds(nodes, collectors):
        wait_until(lambda: min(len(c.seqs) for c in collectors) > 0, "the first messages")
        for k in range(6):  # scripts of different lengths end at different points of a batch
            assert redis.command("EVAL", BUSY_SCRIPT, "0", str(150_000 + 41_000 * k)) == b":1\r\n"
        for p, _ in nodes[:2]:
            p.wait_for(rb"Redis is not ready: BUSY")

    total = 60_000
    # Checked there: each message once at every collector, in one order, and each
    # publisher's in the order it sent them.
    run_publish_scenario(procs, redis, total, disruption=busy_rounds, pause=0.02)


def test_stdin_source_waits_for_its_messages_to_come_back(procs, redis):
    sub_node, sub_port = procs.serve("--source", "none", "--welcome", "",
                                     "--backplane", redis.url("stdin"))
    collector = Collector(sub_port)
    src, src_port = procs.serve("--source", "stdin", "--welcome", "",
                                "--backplane", redis.url("stdin"), stdin=subprocess.PIPE)
    local = Collector(src_port)
    wait_for_log(sub_node, rb"connected \(1 clients\)")
    wait_for_log(src, rb"connected \(1 clients\)")
    # The marker last: the source's messages enter the backplane in order.
    src.p.stdin.write(b"".join(f"seq {i:08d} \n".encode() for i in range(2000)) + MARKER + b"\n")
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
