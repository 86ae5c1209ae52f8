"""Resume on channels across nodes (docs/resume.md, "Channels" and "Several nodes"): `serve
--channels --resume --backplane` takes every channel's offsets from the shared Redis stream (its
append script numbers each channel), so a message has the same channel offset on every node and
a client resumes on any of them; a restarted node starts with the stream's recent entries; a
RESUME sent to a node that has not reached Redis yet waits for the log's epoch; a deleted stream
is a new epoch, reported; a forgotten channel never reuses an offset; an entry without a channel
offset is refused. A real redis-server is started per test (free loopback port, fsync'd
append-only file)."""
import json
import random
import subprocess
import time

import pytest

from channel_resume_wire import ChannelClient, publish, resume
from fault_proxy import FaultProxy
from framecast_test import (metrics, metrics_url, wait_for_log, wait_for_metric, wait_until)
from redis_server import REDIS

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")


def node(procs, redis, *extra, key="chres"):
    return procs.serve("--channels", "--resume", "--backplane", redis.url(key),
                       "--metrics", "127.0.0.1:0", *extra)


def held(proc):
    return metrics(metrics_url(proc))["framecast_resume_history_messages"]


def test_same_channel_offsets_on_every_node_and_resume_on_the_other(procs, redis):
    a, pa = node(procs, redis)
    b, pb = node(procs, redis)
    ca, epoch, _ = resume(pa, {})
    cb, epoch_b, _ = resume(pb, {})
    assert epoch_b == epoch  # one history: the stream's
    assert ca.notice("$sys.ok") == cb.notice("$sys.ok") == "SUB prices.*"
    pub = ChannelClient(pa)
    publish(pub, "prices.eu", ["eu1", "eu2"])
    publish(ChannelClient(pb), "prices.us", ["us1"])  # through the other node: one numbering
    want = {"prices.eu": [(1, "eu1"), (2, "eu2")], "prices.us": [(1, "us1")]}
    assert ca.positioned(3) == cb.positioned(3) == want
    cb.close()

    # Away from B; published on A meanwhile; exactly the missed messages come back on B.
    publish(pub, "prices.eu", ["eu3", "eu4"])
    wait_until(lambda: held(b) == 5, "B read eu3, eu4")
    c, _, answers = resume(pb, {"prices.eu": (epoch, 2), "prices.us": (epoch, 1)})
    assert answers == {"prices.eu": ["3", "ok"], "prices.us": ["2", "ok"]}
    assert c.positioned(2) == {"prices.eu": [(3, "eu3"), (4, "eu4")]}
    publish(pub, "prices.us", ["us2"])  # live, published on the other node
    assert c.positioned(1) == {"prices.us": [(2, "us2")]}


def test_sub_resume_moves_between_nodes_with_one_offset_file(procs, redis, tmp_path):
    a, pa = node(procs, redis)
    b, pb = node(procs, redis)
    pos = tmp_path / "pos"
    pub = ChannelClient(pa)
    s = procs.framecast("sub", f"127.0.0.1:{pb}", "feed.*", "--resume", "--offset-file",
                        str(pos), "-n", "2", "-o", "json")
    wait_for_log(s, rb"subscribed to 1 pattern")
    publish(pub, "feed.a", ["a1", "a2"])
    assert s.wait() == 0, s.stderr[-2000:]
    publish(pub, "feed.a", ["a3"])
    publish(pub, "feed.b", ["b1"])
    s = procs.framecast("sub", f"127.0.0.1:{pa}", "feed.*", "--resume", "--offset-file",
                        str(pos), "-n", "2", "-o", "json", "--no-gap")
    assert s.wait() == 0, s.stderr[-2000:]
    got = [(m["channel"], m["offset"], m["payload"])
           for m in map(json.loads, s.stdout.decode().splitlines())]
    assert got == [("feed.a", 3, "a3"), ("feed.b", 1, "b1")]


def test_restarted_node_serves_resumes_from_the_stream(procs, redis):
    a, pa = node(procs, redis)
    b, pb = node(procs, redis)
    pub = ChannelClient(pa)
    pub.send(*[x for i in range(1, 51) for x in ("PUB prices.eu", f"eu{i}", "PUB prices.us",
                                                  f"us{i}")], "PING")
    assert pub.notice("$sys.pong") == ""
    wait_until(lambda: held(b) == 100, "B read 100 messages")
    _, epoch, _ = resume(pb, {})
    b.kill()
    b, pb = node(procs, redis)  # a new process: its memory is empty
    # start() waits for the history only up to 3 s: wait for the metric, not for "listening".
    m = wait_for_metric(b, "framecast_resume_history_messages", 100)
    assert m["framecast_backplane_history_loaded_total"] >= 1
    c, epoch2, answers = resume(pb, {"prices.eu": (epoch, 40), "prices.us": (epoch, 50)})
    assert epoch2 == epoch
    assert answers == {"prices.eu": ["41", "ok"], "prices.us": ["51", "ok"]}  # no false gap
    assert c.positioned(10) == {"prices.eu": [(i, f"eu{i}") for i in range(41, 51)]}
    publish(pub, "prices.us", ["us51"])
    assert c.positioned(1) == {"prices.us": [(51, "us51")]}
    assert metrics(metrics_url(b))["framecast_resume_gaps_total"] == 0


def test_a_quiet_channel_older_than_a_new_nodes_window_is_not_a_false_gap(procs, redis):
    """A node started with a small window holds none of a quiet channel's messages, yet knows
    its offsets from the stream: a client that has it all is told `ok` and waits for nothing,
    one that lacks some gets them from the stream."""
    a, pa = node(procs, redis)
    pub = ChannelClient(pa)
    publish(pub, "quiet.a", ["q1", "q2", "q3"])
    publish(pub, "busy.b", [f"b{i}" for i in range(1, 21)])  # an entry each
    wait_until(lambda: held(a) == 23, "23 in the log")
    _, epoch, _ = resume(pa, {})
    b, pb = node(procs, redis, "--resume-window", "5", "--resume-total", "5")
    wait_for_metric(b, "framecast_resume_history_messages", 5)  # busy.b 16..20 only
    c, _, answers = resume(pb, {"quiet.a": (epoch, 3), "busy.b": (epoch, 18)},
                           patterns=("quiet.a", "busy.b"))
    assert answers == {"quiet.a": ["4", "ok"], "busy.b": ["19", "ok"]}
    assert c.positioned(2) == {"busy.b": [(19, "b19"), (20, "b20")]}
    publish(pub, "quiet.a", ["q4"])
    assert c.positioned(1) == {"quiet.a": [(4, "q4")]}
    d, _, answers = resume(pb, {"quiet.a": (epoch, 1)}, patterns=())
    # q2, q3: before b's window, still in the stream: replayed from there.
    assert answers == {"quiet.a": ["2", "ok"]}
    assert d.positioned(3) == {"quiet.a": [(2, "q2"), (3, "q3"), (4, "q4")]}
    # A channel the stream never numbered starts at 1 here too.
    publish(pub, "fresh.c", ["f1"])
    e, _, answers = resume(pb, {"fresh.c": (epoch, 0)}, patterns=("fresh.c",))
    assert answers == {"fresh.c": ["1", "ok"]}
    assert e.positioned(1) == {"fresh.c": [(1, "f1")]}


def test_a_position_older_than_the_nodes_window_is_replayed_from_the_stream(procs, redis):
    """Node B keeps 5 messages; the stream keeps them all: a client 25 behind on one channel
    gets them from the stream (the other channel's entries in between are skipped), then from
    B's window, then live, each offset once. Entries the stream no longer has (trimmed) show
    as a hole in the position pairs, which sub --resume reports."""
    a, pa = node(procs, redis)
    b, pb = node(procs, redis, "--resume-window", "5", "--resume-total", "5")
    pub = ChannelClient(pa)
    for i in range(1, 31):  # an entry each, the channels interleaved
        publish(pub, "prices.eu", [f"eu{i}"])
        publish(pub, "prices.us", [f"us{i}"])
    wait_until(lambda: metrics(metrics_url(b))["framecast_backplane_delivered_total"] >= 60,
               "B read all 60")
    assert held(b) == 5
    _, epoch, _ = resume(pa, {})
    c, _, answers = resume(pb, {"prices.eu": (epoch, 5)}, patterns=("prices.eu",))
    assert answers == {"prices.eu": ["6", "ok"]}
    got = c.positioned(25)
    assert got == {"prices.eu": [(i, f"eu{i}") for i in range(6, 31)]}
    publish(pub, "prices.eu", ["eu31"])
    assert c.positioned(1) == {"prices.eu": [(31, "eu31")]}
    m = metrics(metrics_url(b))
    assert m["framecast_resume_log_replayed_total"] >= 20
    assert m["framecast_resume_gaps_total"] == 0

    # The stream trimmed to its last 10 entries (us26, eu27 .. eu31); B holds eu29 on: a
    # client that had eu up to 10 gets 27 .. 31, and is told 11 .. 26 are lost.
    assert redis.command("XTRIM", "chres", "MAXLEN", "10").startswith(b":")
    pos = redis.dir / "pos"
    pos.write_text(f"{epoch} 10 prices.eu\n")
    s = procs.framecast("sub", f"127.0.0.1:{pb}", "prices.eu", "--resume", "-o", "json",
                        "--offset-file", str(pos), "-n", "5")
    assert s.wait() == 0, s.stderr[-2000:]
    lines = [json.loads(line) for line in s.stdout.decode().splitlines() if line]
    assert [m for m in lines if m.get("event") == "gap"] == [
        {"event": "gap", "channel": "prices.eu", "lost": 16, "expected": 11, "next": 27}]
    assert [m["offset"] for m in lines if "offset" in m] == list(range(27, 32))
    assert b"16 messages lost" in s.stderr


def test_resume_sent_while_redis_is_down_waits_for_the_logs_epoch(procs, redis):
    """A node that has not reached the shared log yet answers no RESUME with an epoch of its
    own: the command waits, and so does what the client sent after it."""
    a, pa = node(procs, redis)
    publish(ChannelClient(pa), "prices.eu", ["d1", "d2", "d3"])
    wait_until(lambda: held(a) == 3, "3 published")
    _, epoch, _ = resume(pa, {})
    redis.stop()
    wait_for_metric(a, "framecast_backplane_up", 0)
    b, pb = node(procs, redis)  # starts while Redis is down: no epoch, no offsets yet
    c = ChannelClient(pb)
    c.send("RESUME", f"RESUME prices.eu {epoch} 1", "SUB prices.*", "PING")
    wait_for_log(b, rb"RESUME waits for the shared log's epoch")
    redis.start()
    assert c.notice("$sys.ok") == "RESUME " + epoch
    assert c.notice("$sys.resumed") == f"prices.eu {epoch} 2 ok"
    assert c.positioned(2) == {"prices.eu": [(2, "d2"), (3, "d3")]}
    assert ("$sys.ok", "SUB prices.*") in c.notices and ("$sys.pong", "") in c.notices
    assert metrics(metrics_url(b))["framecast_resume_gaps_total"] == 0


def test_position_ahead_of_a_node_waits_for_it(procs, redis):
    """A client that got a channel offset on A resumes on B before B has read it: it is not
    refused, and receives what follows once B has it."""
    a, pa = node(procs, redis)
    b, pb = node(procs, redis)
    _, epoch, _ = resume(pb, {})
    redis.stop()  # B cannot read now: it knows nothing of prices.eu ...
    for p in (a, b):
        wait_for_metric(p, "framecast_backplane_up", 0)
    c, _, answers = resume(pb, {"prices.eu": (epoch, 3)})
    assert answers == {"prices.eu": ["4", "ok"]}  # ... yet offset 3 may exist: it waits
    redis.start()
    wait_for_metric(a, "framecast_backplane_up", 1)
    publish(ChannelClient(pa), "prices.eu", [f"w{i}" for i in range(1, 6)])
    assert c.positioned(2) == {"prices.eu": [(4, "w4"), (5, "w5")]}
    c.send("PING")
    assert c.notice("$sys.pong") == ""  # nothing before 4 came


def test_deleted_stream_is_a_new_epoch_and_channels_start_again(procs, redis):
    a, pa = node(procs, redis)
    pub = ChannelClient(pa)
    publish(pub, "prices.eu", ["e1", "e2"])
    live, epoch, answers = resume(pa, {"prices.eu": ("x", 0)})
    assert answers == {"prices.eu": ["1", "epoch"]}
    assert live.positioned(2) == {"prices.eu": [(1, "e1"), (2, "e2")]}
    assert redis.command("DEL", "chres").startswith(b":1")
    wait_for_metric(a, "framecast_backplane_epoch_changes_total", 1)
    with pytest.raises((EOFError, OSError)):  # closed: it must resume to learn the epoch
        while True:
            live.pair()
    publish(pub, "prices.eu", ["n1"])
    wait_until(lambda: held(a) == 1, "n1 is in the new epoch's history")
    c, epoch2, answers = resume(pa, {"prices.eu": (epoch, 2)})
    assert epoch2 != epoch
    assert answers == {"prices.eu": ["1", "epoch"]}  # told, and offsets start again at 1
    assert c.positioned(1) == {"prices.eu": [(1, "n1")]}


def test_forgotten_channel_never_reuses_an_offset(procs, redis):
    """Past --resume-channels the log forgets the longest unused channels: one published to again
    starts above every offset it had (a client holding an old position is told of a hole,
    never handed a reused offset)."""
    a, pa = node(procs, redis, "--resume-channels", "2")
    pub = ChannelClient(pa)
    publish(pub, "old.a", ["a1", "a2", "a3"])
    publish(pub, "old.b", [f"b{i}" for i in range(1, 7)])
    for ch in ("old.c", "old.d"):  # old.a, then old.b, are the longest unused: forgotten
        publish(pub, ch, ["x"])
    wait_until(lambda: held(a) == 11, "all 11 in the log")
    for ch in ("old.a", "old.b"):
        assert redis.command("HEXISTS", "{chres}:framecast-channels", ch).startswith(b":0")
    publish(pub, "old.a", ["again"])
    wait_until(lambda: held(a) == 9, "old.a's new message is in (old.a's 1..3 went with it)")
    c, epoch, answers = resume(pa, {"old.a": (held_epoch(pa), 3)}, patterns=("old.a",))
    # old.a starts again above every offset a forgotten channel had (old.b's 6): the client
    # that had 1..3 is answered from 4 (the stream is read for 4.. first) and the position
    # pair shows the hole (4..6, though nothing was published there); never an offset twice.
    assert answers == {"old.a": ["4", "ok"]}
    assert c.positioned(1) == {"old.a": [(7, "again")]}


def test_a_channel_this_node_forgot_but_the_log_numbers_resumes_without_a_false_gap(procs, redis):
    """The node forgets idle channels on its own (its history of them is empty: --resume-total
    1), while Redis still numbers them: a client with a position there waits for the log
    instead of being told a gap, and then gets the next offset the log gives."""
    a, pa = node(procs, redis, "--resume-channels", "3", "--resume-total", "1")
    pub = ChannelClient(pa)
    for ch in ("f.a", "f.b", "f.c", "f.d"):
        publish(pub, ch, [ch + "1"])
    wait_until(lambda: metrics(metrics_url(a))["framecast_backplane_delivered_total"] >= 4,
               "all four read back")
    assert redis.command("HGET", "{chres}:framecast-channels", "f.b").endswith(b"1\r\n")
    c, epoch, answers = resume(pa, {"f.b": (held_epoch(pa), 1)}, patterns=("f.b",))
    assert answers == {"f.b": ["2", "ok"]}
    publish(pub, "f.b", ["f.b2"])
    assert c.positioned(1) == {"f.b": [(2, "f.b2")]}
    c.send("RESUME f.b " + epoch + " 18446744073709551615")
    assert c.notice("$sys.error").startswith("bad-position ")


def held_epoch(port):
    c = ChannelClient(port)
    c.send("RESUME")
    epoch = c.notice("$sys.ok").split(" ")[1]
    c.close()
    return epoch


def test_entry_without_channel_offset_is_refused(procs, redis):
    a, pa = node(procs, redis)
    c, epoch, _ = resume(pa, {})
    assert c.notice("$sys.ok") == "SUB prices.*"
    # Forged: numbered and of the epoch, but not per channel. Skipped, counted, logged.
    forged = b"9         prices.eu4         evil"
    reply = redis.command("XADD", "chres", "0-*", "e", epoch, "n", "x", "f", forged)
    assert reply.startswith(b"$"), reply
    wait_for_metric(a, "framecast_backplane_rejected_total", 1)
    wait_for_log(a, rb"has no channel offset")
    publish(ChannelClient(pa), "prices.eu", ["good"])
    assert c.positioned(1) == {"prices.eu": [(1, "good")]}


def test_sub_clients_through_cuts_two_nodes_node_and_redis_restarts(procs, redis):
    """The resume "Must show" on channels: `sub --resume --reconnect` clients behind a proxy
    that spreads their connections over two nodes and cuts one at random every 0.1 s (RST or
    clean close); a `pub --reconnect` publisher (publish acks) on two channels at a steady pace
    through a proxy of its own; node B restarted, then Redis (append-only file). Every client
    ends with every message of each channel exactly once, in order, offsets 1..n."""
    a, pa = node(procs, redis, "--publish-acks")
    b, pb = node(procs, redis, "--publish-acks")
    proxy = FaultProxy([pa, pb])
    pub_proxy = FaultProxy([pa, pb])
    n, k = 600, 6  # per channel
    try:
        clients = [procs.framecast("sub", f"127.0.0.1:{proxy.port}", "feed.*", "--resume",
                                   "--reconnect", "-o", "json", "-n", str(2 * n))
                   for _ in range(k)]
        wait_until(lambda: all(b"subscribed to 1 pattern" in c.stderr for c in clients),
                   "all subscribed")
        pubs = [procs.framecast("pub", f"127.0.0.1:{pub_proxy.port}", f"feed.{ch}",
                                "--reconnect", "--reconnect-max", "0.2", stdin=subprocess.PIPE)
                for ch in ("a", "b")]
        feeders = [p.p.stdin for p in pubs]
        rng = random.Random(23)
        sent, cuts, b_restarted, redis_restarted, tick = 0, 0, False, False, 0
        while sent < n or any(p.p.poll() is None for p in pubs):
            tick += 1
            if sent < n:  # 20 per channel per tick: 200 messages/s on each
                batch = range(sent + 1, min(n, sent + 20) + 1)
                for ch, f in zip(("a", "b"), feeders):
                    f.write("".join(f"{ch}{i}\n" for i in batch).encode())
                    f.flush()
                sent = batch[-1]
                if sent == n:
                    for f in feeders:
                        f.close()
            cuts += proxy.cut_one(rst=rng.random() < 0.5)
            if tick % 10 == 0:
                pub_proxy.cut(rst=tick % 20 == 0)
            if not b_restarted and sent >= n // 4:
                b_restarted = True
                b.kill()
                b, pb = node(procs, redis, "--publish-acks")
                proxy.set_targets([pa, pb])
                pub_proxy.set_targets([pa, pb])
            elif not redis_restarted and sent >= n * 3 // 5 and tick % 10 == 5:
                redis_restarted = True
                redis.stop()
                redis.start()
            time.sleep(0.1)
        for p in pubs:
            assert p.wait(timeout=60) == 0, p.stderr[-2000:]
        for c in clients:
            assert c.wait(timeout=60) == 0, c.stderr[-2000:]
            lines = [json.loads(line) for line in c.stdout.decode().splitlines() if line]
            for ch in ("a", "b"):
                mine = [m for m in lines if m["channel"] == "feed." + ch]
                assert [m["offset"] for m in mine] == list(range(1, n + 1)), c.stderr[-2000:]
                assert [m["payload"] for m in mine] == [f"{ch}{i}" for i in range(1, n + 1)]
            assert b"messages lost" not in c.stderr
        assert b_restarted and redis_restarted and cuts >= 30
        assert b"reconnecting" in b"".join(c.stderr for c in clients)
    finally:
        proxy.close()
        pub_proxy.close()
