"""Publish acks across nodes (docs/resume.md, "Several nodes"): with `--publish-acks
--backplane` Redis keeps each publisher's last number and the append script drops what it
already has, so a publisher that comes back on another node (or on a restarted one) is
deduplicated as on one node; an ack means Redis has the message. A real redis-server is
started per test."""

import pytest

from framecast_test import (FrameReader, connect, frame, metrics, metrics_url,
                            wait_for_metric, wait_until)
from redis_server import REDIS
from test_publish_resume import Collector, read_ack, request

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")

# Both ways of appending: numbered entries (--resume: offsets) and time-based ones.
MODES = [pytest.param((), id="plain"), pytest.param(("--resume",), id="resume")]


def node(procs, redis, mode, *extra, key="pubs"):
    return procs.serve("--publish", "--publish-acks", *mode, "--backplane", redis.url(key),
                       "--metrics", "127.0.0.1:0", *extra)


@pytest.mark.parametrize("mode", MODES)
def test_publisher_back_on_another_node_is_not_published_twice(procs, redis, mode):
    """The issue's case: a publisher sends to node A, its acks are lost, it comes back on node
    B. B answers with what Redis has, so nothing is resent; and a half-open old connection on
    A that still delivers numbers B already published has them dropped by Redis (in the
    middle of one unit: the rest of it is published)."""
    a, pa = node(procs, redis, mode)
    b, pb = node(procs, redis, mode)
    sub = Collector(pb, b)
    old = connect(pa)
    r_old = FrameReader(old)
    assert request(old, r_old, "n1 pubX") == ["@published", "n1", "0"]
    old.sendall(b"".join(frame(f"m{i}") for i in range(1, 4)))
    read_ack(r_old, "n1", 3)  # an ack: Redis has them (the client's copy of it is "lost")
    # Back on B: Redis has 1..3, so the client sends from 4 on.
    new = connect(pb)
    r_new = FrameReader(new)
    words = request(new, r_new, "n2 pubX")
    assert words == ["@published", "n2", "3"], "B must answer with Redis's last number"
    new.sendall(frame("m4") + frame("m5"))
    read_ack(r_new, "n2", 5)
    # The old connection on A goes on: its next numbers are 4, 5 (Redis has them) and 6.
    old.sendall(frame("m4 again") + frame("m5 again") + frame("m6"))
    read_ack(r_old, "n1", 6)
    wait_until(lambda: sub.count() >= 6, "6 messages at the subscriber")
    assert sub.payloads() == [f"m{i}".encode() for i in range(1, 7)]
    wait_for_metric(metrics_url(a), "framecast_publish_duplicates_total", 2)
    assert metrics(metrics_url(a))["framecast_backplane_publisher_duplicates_total"] == 2
    # Redis keeps the publisher's last number beside the stream.
    assert redis.command("HGET", "{pubs}:framecast-publishers", "pubX") == b"$1\r\n6\r\n"
    # A restarted node knows it too: it has nothing in memory, Redis has it.
    b.kill()
    b, pb = node(procs, redis, mode)
    again = connect(pb)
    assert request(again, FrameReader(again), "n3 pubX") == ["@published", "n3", "6"]


def test_ack_waits_for_redis(procs, redis):
    """An ack means the message is in the shared log: while Redis is down the node reads the
    message but does not acknowledge it; once Redis is back, it does."""
    a, pa = node(procs, redis, ())
    url = metrics_url(a)
    pub = connect(pa)
    r = FrameReader(pub)
    assert request(pub, r, "n1 pubA") == ["@published", "n1", "0"]
    pub.sendall(frame("x1"))
    read_ack(r, "n1", 1)
    redis.stop()
    wait_for_metric(url, "framecast_backplane_up", 0)
    before = metrics(url)
    pub.sendall(frame("x2"))
    wait_for_metric(url, "framecast_messages_in_total", before["framecast_messages_in_total"] + 1)
    assert metrics(url)["framecast_publish_acks_total"] == before["framecast_publish_acks_total"]
    redis.start()
    read_ack(r, "n1", 2)
    assert b"x2" in redis.command("XRANGE", "pubs", "-", "+")


def test_redis_forgets_unused_publishers(procs, redis):
    """The publishers' hash is bounded: one unused for --publisher-expiry is forgotten by the
    next script that runs (and at most --max-publishers are kept)."""
    a, pa = node(procs, redis, (), "--publisher-expiry", "0.2", "--max-publishers", "3")
    first = connect(pa)
    assert request(first, FrameReader(first), "n0 gone") == ["@published", "n0", "0"]
    first.sendall(frame("g1"))
    wait_until(lambda: redis.command("HEXISTS", "{pubs}:framecast-publishers", "gone")
               == b":1\r\n", "the publisher in Redis")
    i = 0

    def attach_another():
        nonlocal i
        i += 1
        s = connect(pa)
        request(s, FrameReader(s), f"n{i} other{i} 2")  # FIRST 2: it is kept in Redis
        s.close()
        return redis.command("HEXISTS", "{pubs}:framecast-publishers", "gone") == b":0\r\n"

    wait_until(attach_another, "the unused publisher forgotten")
    wait_until(lambda: (attach_another() or True) and
               int(redis.command("HLEN", "{pubs}:framecast-publishers")[1:-2]) <= 3,
               "at most --max-publishers kept")
    assert redis.command("ZCARD", "{pubs}:framecast-publishers-used") == \
        redis.command("HLEN", "{pubs}:framecast-publishers")


def test_channels_publisher_with_a_refused_command_across_nodes(procs, redis):
    """On --channels each PUB and its payload is one number; a refused PUB is numbered but
    never reaches Redis, so the units around it carry their ranges (no false gap), and the
    publisher is acknowledged past it and answered on the other node with Redis's number."""
    def channels_node():
        return procs.serve("--channels", "--publish-acks", "--backplane", redis.url("chan"),
                           "--metrics", "127.0.0.1:0")
    a, pa = channels_node()
    b, pb = channels_node()
    sub = connect(pb)
    rs = FrameReader(sub)
    sub.sendall(frame("SUB news"))
    assert (rs.read(), rs.read()) == (b"$sys.ok", b"SUB news")
    pub = connect(pa)
    r = FrameReader(pub)
    assert request(pub, r, "n1 chanpub") == ["@published", "n1", "0"]
    pub.sendall(b"".join(frame(f) for f in ("PUB news", "a", "PUB $bad", "x", "PUB news", "b")))
    read_ack(r, "n1", 3)
    assert [rs.read() for _ in range(4)] == [b"news", b"a", b"news", b"b"]
    again = connect(pb)
    ra = FrameReader(again)
    assert request(again, ra, "n2 chanpub") == ["@published", "n2", "3"]
    again.sendall(frame("PUB news") + frame("c"))
    read_ack(ra, "n2", 4)
    assert [rs.read() for _ in range(2)] == [b"news", b"c"]


@pytest.mark.parametrize("mode", MODES)
def test_many_units_in_one_burst_none_dropped(procs, redis, mode):
    """A burst cut into many units (each about 64 KiB): each unit carries exactly its own
    messages' numbers, so Redis drops none of them as repeats."""
    a, pa = node(procs, redis, mode)
    sub = Collector(pa, a)
    pub = connect(pa)
    r = FrameReader(pub)
    assert request(pub, r, "n1 burst") == ["@published", "n1", "0"]
    n = 20000
    pub.sendall(b"".join(frame(f"burst message {i:06d}") for i in range(1, n + 1)))
    read_ack(r, "n1", n)
    wait_until(lambda: sub.count() >= n, f"{n} messages at the subscriber")
    assert sub.payloads() == [f"burst message {i:06d}".encode() for i in range(1, n + 1)]
    m = metrics(metrics_url(a))
    assert m["framecast_publish_duplicates_total"] == 0
    assert m["framecast_publish_accepted_total"] == n
