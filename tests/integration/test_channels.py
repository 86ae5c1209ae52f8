"""Channels (issue 16): `framecast serve --channels` with the real binary, Python peers speaking
the tutorial's framing, `framecast sub` / `framecast pub`, and the 20-line client written from
docs/channels.md. Every wait is on an event (an acknowledgement, a log line, a delivery)."""
import json
import os
import socket
import sys

import pytest

from framecast_test import BIN, DEADLINE, FrameReader, connect, frame

HERE = os.path.dirname(os.path.abspath(__file__))


class Peer:
    """A raw channels client: command frames out, (channel, payload) pairs in."""

    def __init__(self, port):
        self.sock = connect(port)
        self.reader = FrameReader(self.sock)

    def send(self, *frames):
        self.sock.sendall(b"".join(frame(f) for f in frames))

    def pair(self, timeout=DEADLINE):
        return self.reader.read(timeout), self.reader.read(timeout)

    def sub(self, *patterns):
        self.send(*("SUB " + p for p in patterns))
        for p in patterns:
            assert self.pair() == (b"$sys.ok", ("SUB " + p).encode())

    def ping(self, text="sync"):
        """Everything sent before is handled once the pong arrives."""
        self.send("PING " + text)
        got = []
        while True:
            pair = self.pair()
            if pair == (b"$sys.pong", text.encode()):
                return got
            got.append(pair)


@pytest.fixture
def channels(procs):
    server, port = procs.serve("--channels", "--max-subscriptions", "8", "--max-tokens", "4")
    return server, port


def test_wildcards_overlaps_once_no_echo_and_unsubscribe(channels):
    _, port = channels
    a, b, c = Peer(port), Peer(port), Peer(port)
    a.sub("prices.*", "prices.>", "*.eu")   # overlapping: one delivery each
    c.sub(">")
    b.sub("prices.eu")
    b.send("PUB prices.eu", "101", "PUB prices.eu.close", "99", "PUB news.eu", "n", "PUB x", "y")
    assert b.ping() == []  # b published prices.eu but never receives its own message
    assert a.ping() == [(b"prices.eu", b"101"), (b"prices.eu.close", b"99"), (b"news.eu", b"n")]
    assert c.ping() == [(b"prices.eu", b"101"), (b"prices.eu.close", b"99"), (b"news.eu", b"n"),
                        (b"x", b"y")]
    a.send("UNSUB prices.*", "UNSUB prices.>")
    assert a.pair() == (b"$sys.ok", b"UNSUB prices.*")
    assert a.pair() == (b"$sys.ok", b"UNSUB prices.>")
    b.send("PUB prices.us", "102", "PUB prices.eu", "103")
    b.ping()
    assert a.ping() == [(b"prices.eu", b"103")]  # only *.eu is left


def test_bad_commands_get_notices_and_the_connection_stays(channels):
    _, port = channels
    a, b = Peer(port), Peer(port)
    b.sub("ok")
    a.send("HELLO", "sub x", "SUB a..b", "SUB a.>.b", "PUB a.*", "not a command", "PUB $sys.x", "z",
           "UNSUB never", "SUB a.b.c.d.e", "PUB ok", "still here")
    notices = a.ping()
    codes = [text.split(b" ")[0] for channel, text in notices]
    assert [channel for channel, _ in notices] == [b"$sys.error"] * len(notices)
    assert codes == [b"bad-command", b"bad-command", b"bad-pattern", b"bad-pattern",
                     b"bad-channel", b"reserved", b"not-subscribed", b"too-many-tokens"]
    assert b"unknown command 'HELLO'" in notices[0][1]
    assert b.ping() == [(b"ok", b"still here")]


def test_subscription_limit_is_a_notice(channels):
    _, port = channels
    a = Peer(port)
    a.sub(*[f"t.{i}" for i in range(8)])
    a.send("SUB t.8")
    channel, text = a.pair()
    assert channel == b"$sys.error" and text.startswith(b"too-many-subscriptions ")
    a.sub("t.0")  # held already: acknowledged, still 8


def test_a_framing_error_still_closes(channels):
    _, port = channels
    a = Peer(port)
    a.sock.sendall(b"abc       x")
    with pytest.raises(EOFError):
        a.reader.read()


def test_sub_and_pub_clients(channels, procs):
    _, port = channels
    target = f"127.0.0.1:{port}"
    sub = procs.framecast("sub", target, "prices.*", "news.>", "--count", "3", "--output", "json")
    sub.wait_for(rb"subscribed to 2 patterns")
    pub = procs.framecast("pub", target, "prices.eu", "101", "caf\u00e9")
    assert pub.wait() == 0, pub.stderr
    pub = procs.framecast("pub", target, "news.eu.sport", stdin=None)
    assert pub.wait() == 0, pub.stderr  # no lines on stdin (/dev/null): nothing, still confirmed
    pub = procs.start(["sh", "-c", f"printf 'goal\\n' | {BIN} pub {target} news.eu.sport"])
    assert pub.wait() == 0, pub.stderr
    assert sub.wait() == 0, sub.stderr
    lines = [json.loads(line) for line in sub.stdout.decode().splitlines()]
    assert lines == [{"channel": "prices.eu", "payload": "101"},
                     {"channel": "prices.eu", "payload": "caf\u00e9"},
                     {"channel": "news.eu.sport", "payload": "goal"}]


def test_sub_output_formats(channels, procs):
    _, port = channels
    target = f"127.0.0.1:{port}"
    subs = {fmt: procs.framecast("sub", target, "a.*", "--count", "1", "--output", fmt)
            for fmt in ("lines", "framed", "raw")}
    for s in subs.values():
        s.wait_for(rb"subscribed to 1 pattern")
    assert procs.framecast("pub", target, "a.b", "hello world").wait() == 0
    for s in subs.values():
        assert s.wait() == 0, s.stderr
    assert subs["lines"].stdout == b"a.b hello world\n"
    assert subs["framed"].stdout == frame("a.b") + frame("hello world")
    assert subs["raw"].stdout == b"hello world"


def test_pub_exit_codes_are_honest(channels, procs):
    _, port = channels
    target = f"127.0.0.1:{port}"
    bad = procs.framecast("pub", target, "prices.*", "x")
    assert bad.wait() == 1
    assert b"bad-channel" in bad.stderr and b"wildcard" in bad.stderr
    refused = procs.framecast("sub", target, "a..b", "--count", "1")
    assert refused.wait() == 1
    assert b"bad-pattern" in refused.stderr


def test_pub_to_a_server_without_channels_fails(procs):
    server, port = procs.serve("--publish")
    pub = procs.framecast("pub", f"127.0.0.1:{port}", "a.b", "x", "--close-timeout", "0.5")
    assert pub.wait() == 7
    assert b"no answer to the final PING" in pub.stderr


def test_sub_exits_non_zero_when_the_server_closes_early(procs):
    server, port = procs.serve("--channels")
    sub = procs.framecast("sub", f"127.0.0.1:{port}", "a", "--count", "2")
    sub.wait_for(rb"subscribed to 1 pattern")
    server.signal()
    assert sub.wait() == 1
    assert b"after 0 of 2 deliveries" in sub.stderr


def test_the_python_client_written_from_the_spec(channels, procs):
    _, port = channels
    client = os.path.join(HERE, "channels_client.py")
    sub = procs.start([sys.executable, client, str(port), "sub", "room.*", "2"])
    sub.wait_for(rb"\$sys.ok SUB room\.\*", stream="out")
    for text in ("hello", "bye"):
        pub = procs.start([sys.executable, client, str(port), "pub", "room.1", text])
        assert pub.wait() == 0, pub.stderr
    assert sub.wait() == 0, sub.stderr
    assert sub.stdout.decode().splitlines()[1:] == ["room.1 > hello", "room.1 > bye"]
    bad = procs.start([sys.executable, client, str(port), "pub", "room.*", "x"])
    assert bad.wait() == 1 and b"refused: $sys.error bad-channel" in bad.stderr


def test_chat_rooms_on_one_channels_server(channels, procs):
    import subprocess
    _, port = channels
    target = f"127.0.0.1:{port}"

    def chat(name, room):
        p = procs.framecast("chat", target, "--name", name, "--room", room, stdin=subprocess.PIPE)
        p.wait_for(rb"in the room \(SUB chat\." + room.encode() + rb"\.\*\)")
        return p

    bob, carol, alice = chat("bob", "r1"), chat("carol", "r2"), chat("alice", "r1")
    alice.p.stdin.write(b"hi from alice\n")
    alice.p.stdin.flush()
    bob.wait_for(rb"alice > hi from alice\n", stream="out")
    carol.p.stdin.write(b"hi from carol\n")
    carol.p.stdin.close()
    assert carol.wait() == 0, carol.stderr
    bob.p.stdin.write(b"bye\n")
    bob.p.stdin.close()
    alice.wait_for(rb"bob > bye\n", stream="out")
    assert bob.wait() == 0
    alice.p.stdin.close()
    assert alice.wait() == 0
    # Rooms are apart, and nobody sees its own lines echoed back.
    assert b"carol" not in alice.stdout + bob.stdout
    assert carol.stdout == b""
    assert b"alice >" not in alice.stdout
    bad = procs.framecast("chat", target, "--name", "a.b", "--room", "r1")
    assert bad.wait() == 2 and b"--name 'a.b' cannot name a channel token" in bad.stderr


def test_per_channel_metrics_are_opt_in_and_bounded(procs):
    from framecast_test import metrics
    server, port = procs.serve("--channels", "--channel-metrics", "2", "--metrics", "127.0.0.1:0")
    a, b, c = Peer(port), Peer(port), Peer(port)
    a.sub(">")
    b.sub("prices.*")
    c.send("PUB prices.eu", "1", "PUB prices.eu", "2", 'PUB we"ird', "3", "PUB news", "4",
           "PUB prices.us", "5")
    c.ping()
    assert len(a.ping()) == 5
    m = metrics(server)
    # The first two channels published to have their own series; the rest add up in _other.
    assert m['framecast_channel_messages_total{channel="prices.eu"}'] == 2
    assert m['framecast_channel_deliveries_total{channel="prices.eu"}'] == 4  # a and b
    assert m['framecast_channel_messages_total{channel="we\\"ird"}'] == 1  # escaped label
    assert m['framecast_channel_messages_total{channel="_other"}'] == 2  # news, prices.us
    assert m['framecast_channel_deliveries_total{channel="_other"}'] == 3
    assert not any('channel="prices.us"' in k for k in m)
    # Off by default: no per-channel series at all.
    plain, _ = procs.serve("--channels", "--metrics", "127.0.0.1:0")
    assert not any(k.startswith("framecast_channel_messages_total") for k in metrics(plain))


def test_publishes_nobody_hears_are_counted_and_the_next_subscriber_gets_the_rest(procs):
    """A publish no other member receives is dropped before it becomes a unit (the server
    remembers "nobody hears this channel" until the subscriptions change): it must still be
    counted, and a subscriber that arrives between two publishes to the same channel must get
    every later one."""
    from framecast_test import metrics
    server, port = procs.serve("--channels", "--channel-metrics", "4", "--metrics", "127.0.0.1:0")
    b, c = Peer(port), Peer(port)
    c.sub("quiet.x")  # its own subscription does not make its publishes heard
    c.send("PUB quiet.x", "1", "PUB quiet.x", "2")
    assert c.ping() == []
    b.sub("quiet.*")
    c.send("PUB quiet.x", "3")
    c.ping()
    assert b.ping() == [(b"quiet.x", b"3")]
    b.send("UNSUB quiet.*")
    assert b.pair() == (b"$sys.ok", b"UNSUB quiet.*")
    c.send("PUB quiet.x", "4")
    c.ping()
    b.sub(">")
    c.send("PUB quiet.x", "5", "PUB other", "6")
    c.ping()
    assert b.ping() == [(b"quiet.x", b"5"), (b"other", b"6")]
    m = metrics(server)
    assert m['framecast_channel_messages_total{channel="quiet.x"}'] == 5
    assert m['framecast_channel_deliveries_total{channel="quiet.x"}'] == 2
    assert m["framecast_messages_broadcast_total"] == 6
