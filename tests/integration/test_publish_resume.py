"""Publishing that survives reconnects (docs/resume.md, "Publishing"): `serve --publish-acks`
and `send/pub --reconnect` over real sockets on loopback. The request and its answer, cumulative
acks, duplicates (a half-open old connection still delivering) dropped and counted; a sender
whose connection a fault-injecting proxy cuts again and again delivers every line exactly once,
in order; a server without the option is a clear error; the resend buffer is bounded."""
import socket
import subprocess
import threading
import time

import pytest

from fault_proxy import FaultProxy
from framecast_test import (FrameReader, connect, frame, metrics, metrics_url, wait_for_client,
                            wait_for_log, wait_for_metric, wait_until)


def request(sock, reader, rest):
    """Sends "@publish REST" and returns the answer's words."""
    sock.sendall(frame("@publish " + rest))
    while True:  # frames queued before the request was read (broadcasts) are not ours
        p = reader.read()
        if p.startswith(b"@publish"):
            return p.decode().split(" ")


def read_ack(reader, nonce, want):
    """Reads acks until one says `want`; every ack is cumulative and never goes back. Other
    publishers' messages (a publisher receives them on --publish) are skipped."""
    last = 0
    while last < want:
        p = reader.read()
        if not p.startswith(b"@ack "):
            continue
        words = p.decode().split(" ")
        assert words[:2] == ["@ack", nonce], words
        assert int(words[2]) > last
        last = int(words[2])
    assert last == want


class Collector:
    """A plain subscriber: every payload it receives, in order (a thread reads)."""

    def __init__(self, port, server):
        self.sock = connect(port)
        wait_for_client(server, self.sock)
        self.got = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        r = FrameReader(self.sock)
        try:
            while True:
                p = r.read(timeout=60)
                with self.lock:
                    self.got.append(p)
        except (OSError, AssertionError, EOFError):
            pass

    def count(self):
        with self.lock:
            return len(self.got)

    def payloads(self):
        with self.lock:
            return list(self.got)


def test_request_answer_acks_and_duplicates_dropped(procs):
    server, port = procs.serve("--publish", "--publish-acks", "--metrics", "127.0.0.1:0")
    url = metrics_url(server)
    sub = Collector(port, server)
    a = connect(port)
    ra = FrameReader(a)
    assert request(a, ra, "n1 pubX") == ["@published", "n1", "0"]
    a.sendall(b"".join(frame(f"m{i}") for i in range(1, 6)))
    read_ack(ra, "n1", 5)
    # A second connection of the same publisher (the old one is still open: half-open, as
    # after a cut the server has not noticed) learns the server has 1..5.
    b = connect(port)
    rb = FrameReader(b)
    assert request(b, rb, "n2 pubX") == ["@published", "n2", "5"]
    b.sendall(frame("m6") + frame("m7"))
    read_ack(rb, "n2", 7)
    # The old connection goes on: its next frames are numbers 6 and 7 again (dropped), then 8.
    a.sendall(frame("m6 again") + frame("m7 again") + frame("m8"))
    read_ack(ra, "n1", 8)
    wait_until(lambda: sub.count() >= 8, "8 messages at the subscriber")
    assert sub.payloads() == [f"m{i}".encode() for i in range(1, 9)]
    m = wait_for_metric(url, "framecast_publish_duplicates_total", 2)
    assert m["framecast_publish_accepted_total"] == 8
    assert m["framecast_publish_requests_total"] == 2
    assert m["framecast_publish_publishers"] == 1
    # FIRST: a client that holds nothing before 20 (acknowledged before a server restart).
    c = connect(port)
    rc = FrameReader(c)
    assert request(c, rc, "n3 pubY 20") == ["@published", "n3", "19"]
    # A malformed request is refused, and the connection closed.
    d = connect(port)
    rd = FrameReader(d)
    words = request(d, rd, "bad!nonce pubZ")
    assert words[0] == "@publish-error"
    wait_for_metric(url, "framecast_publish_refused_total", 1)
    # A plain publisher's first frame is a message as always.
    e = connect(port)
    e.sendall(frame("plain"))
    wait_until(lambda: sub.count() >= 9, "the plain message")
    assert sub.payloads()[-1] == b"plain"


def test_publisher_ids_are_scoped_by_the_authenticated_subject(procs, tmp_path):
    """Under --auth, a client cannot take over another subject's publisher id: a FIRST far
    ahead would otherwise make the server drop that publisher's next messages as repeats."""
    jwt = pytest.importorskip("jwt")
    secret = "a-shared-secret-of-at-least-32-bytes!"
    key = tmp_path / "secret"
    key.write_text(secret)
    server, port = procs.serve("--publish", "--publish-acks", "--auth", "jwt", "--jwt-key", key,
                               "--metrics", "127.0.0.1:0")
    url = metrics_url(server)

    def login(subject):
        s = connect(port)
        s.sendall(frame(jwt.encode({"sub": subject, "exp": int(time.time()) + 600}, secret,
                                   algorithm="HS256")))
        r = FrameReader(s)
        assert r.read() == b"framecast: auth ok"
        return s, r

    alice, ra = login("alice")
    assert request(alice, ra, "n1 feed") == ["@published", "n1", "0"]
    alice.sendall(b"".join(frame(f"m{i}") for i in range(1, 4)))
    read_ack(ra, "n1", 3)
    mallory, rm = login("mallory")
    assert request(mallory, rm, "n2 feed 1000000") == ["@published", "n2", "999999"]
    alice.sendall(frame("m4"))
    read_ack(ra, "n1", 4)
    m = wait_for_metric(url, "framecast_publish_accepted_total", 4)
    assert m["framecast_publish_duplicates_total"] == 0
    assert m["framecast_publish_publishers"] == 2
    # The same subject reconnecting finds its own publisher.
    again, rg = login("alice")
    assert request(again, rg, "n3 feed") == ["@published", "n3", "4"]


def test_send_reconnect_through_cuts_delivers_each_line_once(procs):
    server, port = procs.serve("--publish", "--publish-acks", "--metrics", "127.0.0.1:0")
    url = metrics_url(server)
    sub = Collector(port, server)
    proxy = FaultProxy(port)
    try:
        n = 3000
        lines = "".join(f"line {i}\n" for i in range(1, n + 1)).encode()
        sender = procs.framecast("send", f"127.0.0.1:{proxy.port}", "--reconnect",
                                 "--rate", "1500/s", "--reconnect-max", "0.2",
                                 stdin=subprocess.PIPE)
        sender.p.stdin.write(lines)
        sender.p.stdin.close()
        for k, mark in enumerate(range(300, n - 300, 400)):
            wait_until(lambda: sub.count() >= mark, f"{mark} lines at the subscriber")
            wait_until(lambda: proxy.connections() >= 1, "the sender connected")
            if k % 3 == 2:
                # (Once the sender has the answer on this connection: not the answer lost.)
                wait_until(lambda: sender.stderr.rfind(b"publishing as") >
                           sender.stderr.rfind(b"reconnecting"),
                           "the answer on the sender's current connection")
                # Acknowledgements lost before the cut: the server has lines the sender still
                # holds; the answer on the next connection says so, and they are not sent again.
                # (Duplicates from a half-open old connection: the raw-protocol test.)
                proxy.replies_lost.set()
                wait_until(lambda: sub.count() >= mark + 100, "lines past the lost acks")
            assert proxy.cut(rst=k % 2 == 0) >= 1
            proxy.replies_lost.clear()
        assert sender.wait() == 0, sender.stderr[-2000:]
        wait_until(lambda: sub.count() >= n, f"{n} lines")
        assert sub.payloads() == [f"line {i}".encode() for i in range(1, n + 1)]
        assert b"reconnecting" in sender.stderr
        assert proxy.accepted >= 6  # each cut above cut a connection of its own
        m = metrics(url)
        assert m["framecast_publish_accepted_total"] == n
        assert m["framecast_publish_requests_total"] >= 6
    finally:
        proxy.close()


def test_pub_reconnect_on_channels(procs):
    server, port = procs.serve("--channels", "--publish-acks")
    sub = connect(port)
    r = FrameReader(sub)
    sub.sendall(frame("SUB news"))
    assert (r.read(), r.read()) == (b"$sys.ok", b"SUB news")
    pub = procs.framecast("pub", f"127.0.0.1:{port}", "news", "a", "b", "c", "--reconnect")
    assert pub.wait() == 0, pub.stderr[-2000:]
    assert [r.read() for _ in range(6)] == [b"news", b"a", b"news", b"b", b"news", b"c"]
    bad = procs.framecast("pub", f"127.0.0.1:{port}", "$bad", "x", "--reconnect")
    assert bad.wait() == 1 and b"refused 1 command" in bad.stderr


def test_server_without_publish_acks_is_a_clear_error(procs):
    server, port = procs.serve("--publish")
    c = procs.framecast("send", f"127.0.0.1:{port}", "hello", "--reconnect",
                        "--connect-timeout", "0.5")
    assert c.wait() == 1
    assert b"no answer to the publish request" in c.stderr
    assert b"--publish-acks" in c.stderr
    bad = procs.framecast("send", "127.0.0.1:9", "x", "--publisher-id", "p1")
    assert bad.wait() == 2  # --publisher-id needs --reconnect
    bad = procs.framecast("send", "127.0.0.1:9", "x", "--reconnect", "--publisher-id", "a b")
    assert bad.wait() == 2
    bad = procs.framecast("serve", "--publish-acks")
    assert bad.wait() == 2 and b"--publish-acks needs" in bad.stderr


def test_resend_buffer_is_bounded(procs):
    """A server that answers and then acknowledges nothing: the sender stops taking input once
    --max-unacked bytes wait for acknowledgement; acks let the rest through."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    line = "x" * 99 + "\n"
    total = 40_000  # 4 MB of lines, 16 times --max-unacked
    sender = procs.framecast("send", f"127.0.0.1:{port}", "--reconnect", "--max-unacked",
                             "256KiB", stdin=subprocess.PIPE)

    def feed():
        sender.p.stdin.write((line * total).encode())
        sender.p.stdin.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    conn, _ = listener.accept()
    conn.settimeout(30)
    r = FrameReader(conn)
    words = r.read().decode().split(" ")
    assert words[0] == "@publish" and len(words) == 4 and words[3] == "1"
    nonce = words[1]
    conn.sendall(frame(f"@published {nonce} 0"))
    got = [0]
    acked = [None]  # None: not acknowledging yet
    lock = threading.Lock()
    failed = []

    def ack(n):
        with lock:
            acked[0] = n  # before the ack goes: what it lets through is read after this
            conn.sendall(frame(f"@ack {nonce} {n}"))

    def read_all():
        try:
            while got[0] < total:
                assert r.read() == line[:-1].encode()
                got[0] += 1
                if acked[0] is not None and (got[0] - acked[0] >= 1000 or got[0] == total):
                    ack(got[0])
        except Exception as e:  # reported by the main thread
            failed.append(e)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    held = int(sender.wait_for(rb"(\d+) bytes not yet acknowledged", timeout=30).group(1))
    # What waits is bounded by --max-unacked plus what the input queue holds (a quarter of
    # it) and one read of input: far below the 4 MB fed, the rest of which still waits.
    assert 256 * 1024 <= held < 256 * 1024 + 64 * 1024 + 300 * 1024, held
    assert feeder.is_alive()
    wait_until(lambda: got[0] * 109 >= held, "every held byte at the server")
    ack(got[0])  # from now on the reader acknowledges every 1,000 messages
    reader.join(timeout=30)
    assert not failed and got[0] == total, (failed, got[0], sender.stderr[-3000:])
    assert sender.wait() == 0, sender.stderr[-2000:]
    conn.close()
    listener.close()
