"""Channels across three nodes through a real redis-server (issue 16): one stream carries every
publish with its channel inside the entry; each node matches it against its own subscribers."""
import pytest

from redis_server import REDIS
from test_channels import Peer

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")


def test_three_nodes_deliver_by_pattern_once_without_echo(procs, redis):  # noqa: F811
    nodes = [procs.serve("--channels", "--backplane", redis.url("channels"))[1] for _ in range(3)]
    eu = Peer(nodes[0])
    eu.sub("prices.eu", "*.eu", "end")            # overlapping: each message once
    everything = Peer(nodes[1])
    everything.sub(">")
    us = Peer(nodes[2])
    us.sub("prices.us", "end")
    publisher = Peer(nodes[1])
    publisher.sub("prices.>", "end")              # its own messages never come back to it
    other = Peer(nodes[2])
    other.send("PUB prices.us", "u1", "PUB news.eu", "n1")
    other.ping()
    # A pong means node 2 took the commands, not that Redis has them yet: wait until node 1
    # delivered both, so node 1's publishes below enter the stream after them.
    first = [everything.pair(), everything.pair()]
    assert first == [(b"prices.us", b"u1"), (b"news.eu", b"n1")]
    publisher.send("PUB prices.eu", "e1", "PUB weather.fr", "w1", "PUB prices.us", "u2")
    early = publisher.ping()  # u1 may already have come round
    # Again a pong is not Redis: node 0 could append "end" before node 1's batch. Node 2 got
    # u2 from the stream, so e1 and w1, which node 1 appended before it, are in it too.
    assert [us.pair(), us.pair()] == [(b"prices.us", b"u1"), (b"prices.us", b"u2")]
    # "end" is published last: after it, each subscriber has everything before it (one order).
    last = Peer(nodes[0])
    last.send("PUB end", "!")
    last.ping()

    def until_end(peer):
        got = []
        while True:
            pair = peer.pair()
            if pair == (b"end", b"!"):
                return got
            got.append(pair)

    assert until_end(eu) == [(b"news.eu", b"n1"), (b"prices.eu", b"e1")]
    assert until_end(us) == []
    assert first + until_end(everything) == [(b"prices.us", b"u1"), (b"news.eu", b"n1"),
                                             (b"prices.eu", b"e1"), (b"weather.fr", b"w1"),
                                             (b"prices.us", b"u2")]
    # The publisher (prices.>) got u1 from the other client, not its own e1 and u2.
    assert early + until_end(publisher) == [(b"prices.us", b"u1")]


def test_an_entry_that_mixes_channels_or_names_a_bad_one_is_rejected(procs, redis):  # noqa: F811
    """Redis is not trusted: a unit is delivered by its first channel, so an entry written
    into the stream by someone else that carries a second channel's messages (or a channel
    name no client could publish to) would reach the wrong subscribers. It is rejected, named
    in the log, and the stream goes on."""
    from framecast_test import frame, wait_for_log
    node, port = procs.serve("--channels", "--backplane", redis.url("forged"))
    public = Peer(port)
    public.sub("public", "end")
    mixed = frame("public") + frame("hello") + frame("secret") + frame("leak")
    assert redis.command("XADD", "forged", "*", "f", mixed.decode()).startswith(b"$")
    bad = frame("public.*") + frame("wildcard")
    assert redis.command("XADD", "forged", "*", "f", bad.decode()).startswith(b"$")
    Peer(port).send("PUB end", "!")
    # The stream's order: once "end" arrives, both forged entries were read before it.
    assert public.pair() == (b"end", b"!"), "a forged entry was delivered"
    wait_for_log(node, rb"rejected: messages of more than one channel in one entry")
    wait_for_log(node, rb"rejected: channel 'public\.\*'")
