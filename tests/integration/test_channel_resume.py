"""Resume on channels (docs/resume.md#channels): `serve --channels --resume` gives every channel
its own offsets and window. Raw protocol over real sockets on loopback: a wildcard subscriber
gets positions naming the channel, a resume after a disconnect gets exactly the missed messages
of each channel, a position outside a channel's window is told `gap`, and one from before a
restart `epoch`; plain channels clients see the same bytes as without --resume."""
import json

from channel_resume_wire import ChannelClient, publish, resume
from fault_proxy import FaultProxy
from framecast_test import (FrameReader, frame, free_port, metrics, metrics_url,
                            small_rcvbuf_socket, wait_until)


def serve(procs, *args):
    return procs.serve("--channels", "--resume", *args)


def test_offsets_per_channel_and_exact_resume(procs):
    server, port = serve(procs, "--resume-window", "5")
    pub = ChannelClient(port)
    plain = ChannelClient(port)
    plain.send("SUB prices.*")
    assert plain.notice("$sys.ok") == "SUB prices.*"

    a, epoch, _ = resume(port, {})
    assert a.notice("$sys.ok") == "SUB prices.*"
    publish(pub, "prices.eu", ["eu1", "eu2"])
    publish(pub, "prices.us", ["us1"])
    got = a.positioned(3)
    assert got == {"prices.eu": [(1, "eu1"), (2, "eu2")], "prices.us": [(1, "us1")]}
    # A plain subscriber: the same pairs as without --resume, byte for byte.
    want = b"".join(frame(c) + frame(p) for c, p in
                    [("prices.eu", "eu1"), ("prices.eu", "eu2"), ("prices.us", "us1")])
    got_plain = b""
    r = FrameReader(plain.sock)
    while len(got_plain) < len(want):
        got_plain += frame(r.read())
    assert got_plain == want
    a.close()

    # Away: what each channel gets meanwhile comes back exactly once, then the live stream.
    publish(pub, "prices.eu", ["eu3", "eu4"])
    publish(pub, "prices.us", ["us2", "us3", "us4"])
    publish(pub, "news.x", ["not subscribed"])
    b, epoch2, answers = resume(port, {"prices.eu": (epoch, 2), "prices.us": (epoch, 1)})
    assert epoch2 == epoch
    assert answers == {"prices.eu": ["3", "ok"], "prices.us": ["2", "ok"]}
    got = b.positioned(5)
    assert got == {"prices.eu": [(3, "eu3"), (4, "eu4")],
                   "prices.us": [(2, "us2"), (3, "us3"), (4, "us4")]}
    publish(pub, "prices.eu", ["eu5"])
    got = b.positioned(1)
    assert got == {"prices.eu": [(5, "eu5")]}
    assert b.notices == [("$sys.ok", "SUB prices.*")]  # between the pieces, in order

    # Outside the window (5 per channel): the answer counts what is gone; prices.us still ok.
    publish(pub, "prices.eu", [f"eu{i}" for i in range(6, 16)])
    b.positioned(10)
    c, _, answers = resume(port, {"prices.eu": (epoch, 5), "prices.us": (epoch, 4)})
    assert answers == {"prices.eu": ["11", "gap", "5"], "prices.us": ["5", "ok"]}
    got = c.positioned(5)
    assert got == {"prices.eu": [(i, f"eu{i}") for i in range(11, 16)]}

    # An offset ahead of the channel is refused; the connection stays.
    c.send("RESUME prices.us " + epoch + " 99", "PING")
    assert c.notice("$sys.error").startswith("bad-position ")
    assert c.notice("$sys.pong") == ""
    server.kill()

    # A restart: a new epoch, told per channel; what the new server holds follows.
    server, port = serve(procs)
    pub = ChannelClient(port)
    publish(pub, "prices.eu", ["new1"])
    d, epoch3, answers = resume(port, {"prices.eu": (epoch, 15), "prices.us": (epoch, 4)})
    assert epoch3 != epoch
    assert answers == {"prices.eu": ["1", "epoch"], "prices.us": ["1", "epoch"]}
    assert d.positioned(1) == {"prices.eu": [(1, "new1")]}


def test_live_messages_during_a_stalled_replay_come_once(procs):
    """The seam: a channel's messages published while its replay is stalled (the client does
    not read) wait in the history; the client gets every offset once, in order."""
    server, port = serve(procs, "--metrics", "127.0.0.1:0")
    url = metrics_url(server)
    pub = ChannelClient(port)
    n, body = 20000, "x" * 1000
    pub.send(*[x for i in range(1, n + 1) for x in ("PUB big.a", f"{i} {body}")], "PING")
    assert pub.notice("$sys.pong") == ""
    slow = ChannelClient(port, small_rcvbuf_socket(port))
    slow.send("RESUME", "RESUME big.a old 0", "SUB big.a")  # "old": told epoch, all replayed
    wait_until(lambda: metrics(url)["framecast_resume_max_lag"] > n // 2, "a stalled replay")
    publish(pub, "big.a", [f"{i} live" for i in range(n + 1, n + 101)])
    got = slow.positioned(n + 100 + 0)
    assert [o for o, _ in got["big.a"]] == list(range(1, n + 101))
    assert [p.split(" ")[0] for _, p in got["big.a"]] == [str(i) for i in range(1, n + 101)]
    assert slow.notices[:2] == [("$sys.ok", "RESUME " + slow.notices[0][1].split(" ")[1]),
                                ("$sys.resumed", slow.notices[1][1])]
    assert slow.notices[1][1].endswith(" 1 epoch")


def test_own_publishes_and_unheard_channels_are_kept(procs):
    """A client with positions receives its own publishes (no hole in its offsets), and a
    channel nobody hears still keeps its history."""
    server, port = serve(procs)
    pub = ChannelClient(port)
    publish(pub, "quiet.a", ["q1", "q2"])
    c, epoch, answers = resume(port, {"quiet.a": ("x", 0)}, patterns=("quiet.>",))
    assert answers == {"quiet.a": ["1", "epoch"]}
    assert c.positioned(2) == {"quiet.a": [(1, "q1"), (2, "q2")]}
    c.send("PUB quiet.a", "mine", "PING")
    got = c.positioned(1)
    assert got == {"quiet.a": [(3, "mine")]}


def test_resume_refused_without_history(procs):
    server, port = procs.serve("--channels")
    c = ChannelClient(port)
    c.send("RESUME")
    assert c.notice("$sys.error").startswith("bad-command ")


def json_lines(proc):
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line]


def test_sub_resume_reconnect_through_cuts_misses_nothing(procs):
    """`sub --resume --reconnect` behind a proxy that cuts every connection (RST, then a clean
    close, alternately) while two channels are published to: each client ends with every
    message of every channel exactly once, in order."""
    server, port = serve(procs)
    proxy = FaultProxy(port)
    try:
        n, k, rounds = 1200, 4, 6
        clients = [procs.framecast("sub", "--resume", "--reconnect", "-o", "json",
                                   "-n", str(2 * n), f"127.0.0.1:{proxy.port}", "feed.*")
                   for _ in range(k)]
        wait_until(lambda: all(b"subscribed to 1 pattern" in c.stderr for c in clients),
                   "all subscribed")
        pub = ChannelClient(port)
        sent = 0
        for round_ in range(rounds):
            batch = range(sent + 1, sent + 1 + n // rounds)
            # Both channels in every batch, interleaved: one unit per channel switch.
            pub.send(*[x for i in batch for x in ("PUB feed.a", f"a{i}", "PUB feed.b", f"b{i}")],
                     "PING")
            assert pub.notice("$sys.pong") == ""
            sent += len(batch)
            if sent == n:
                break  # the last batch: the clients end with it
            # Cut mid-stream (the first time once each client has both channels' positions).
            target = 2 * sent - (n // rounds if round_ > 0 else 0)
            wait_until(lambda: min(c.stdout.count(b"\n") for c in clients) >= target,
                       f"{target} deliveries out at every client")
            assert proxy.cut(rst=round_ % 2 == 0) >= 1
            wait_until(lambda: proxy.connections() >= sum(c.p.poll() is None for c in clients),
                       "the clients reconnected")
        for c in clients:
            assert c.wait() == 0, c.stderr[-2000:]
            lines = json_lines(c)
            assert len(lines) == 2 * n
            for ch in ("a", "b"):
                mine = [m for m in lines if m["channel"] == "feed." + ch]
                assert [m["offset"] for m in mine] == list(range(1, n + 1))
                assert [m["payload"] for m in mine] == [f"{ch}{i}" for i in range(1, n + 1)]
            assert b"messages lost" not in c.stderr and b"reconnecting" in c.stderr
        assert proxy.accepted >= 2 * k
    finally:
        proxy.close()


def test_sub_offset_file_gap_and_epoch_per_channel(procs, tmp_path):
    """--offset-file keeps one line per channel; a position outside a channel's window is a
    reported gap naming the channel, and after a restart --no-gap stops with exit code 12."""
    pos = tmp_path / "pos.txt"
    server, port = serve(procs, "--resume-window", "3")
    pub = ChannelClient(port)
    first = procs.framecast("sub", "--resume", "--offset-file", str(pos), "-n", "2",
                            f"127.0.0.1:{port}", "t.*")
    wait_until(lambda: b"subscribed to 1 pattern" in first.stderr, "subscribed")
    publish(pub, "t.x", ["x1"])
    publish(pub, "t.y", ["y1"])
    assert first.wait() == 0
    lines = sorted(pos.read_text().splitlines())
    epoch = lines[0].split(" ")[0]
    # One line per channel, and the process-wide sequence ("*": t.y's message was the 2nd).
    assert lines == [f"{epoch} 1 t.x", f"{epoch} 1 t.y", f"{epoch} 2 *"]

    publish(pub, "t.x", [f"x{i}" for i in range(2, 10)])  # the window keeps x7..x9
    publish(pub, "t.y", ["y2"])
    publish(pub, "t.z", [f"z{i}" for i in range(1, 6)])  # a new channel: z3..z5 kept
    again = procs.framecast("sub", "--resume", "--offset-file", str(pos), "-n", "7", "-o", "json",
                            f"127.0.0.1:{port}", "t.*")
    assert again.wait() == 0, again.stderr
    out = json_lines(again)
    assert {"event": "gap", "channel": "t.x", "lost": 5, "expected": 2, "next": 7} in out
    assert {"event": "gap", "channel": "t.z", "lost": 2, "expected": 1, "next": 3} in out
    assert [(m["channel"], m["offset"]) for m in out if "offset" in m] == \
        [("t.x", 7), ("t.x", 8), ("t.x", 9), ("t.y", 2), ("t.z", 3), ("t.z", 4), ("t.z", 5)]
    assert b"resume t.x: 5 messages lost" in again.stderr
    assert b"resume t.z: 2 messages lost" in again.stderr
    server.kill()

    server, port = serve(procs)
    stopped = procs.framecast("sub", "--resume", "--offset-file", str(pos), "--no-gap",
                              f"127.0.0.1:{port}", "t.*")
    assert stopped.wait() == 12
    assert b"resume t.x: the server's history changed" in stopped.stderr
    assert sorted(pos.read_text().splitlines())[0].startswith(epoch)  # not moved past the loss


def test_a_channel_first_published_while_away_is_replayed(procs):
    """RESUME * EPOCH SEQ: a channel the client never heard of, first published while it was
    away and matched only by its wildcard, is replayed from after SEQ on SUB, exactly once, in
    order, then live; outside the window it is a reported gap, never a silent one."""
    server, port = serve(procs, "--resume-window", "3")
    pub = ChannelClient(port)
    a = ChannelClient(port)
    a.send("RESUME", "RESUME *", "SUB news.*")
    epoch = a.notice("$sys.ok").split(" ")[1]
    assert a.notice("$sys.resumed") == f"* {epoch} 1 ok"  # nothing published yet
    assert a.notice("$sys.ok") == "SUB news.*"
    publish(pub, "news.old", ["o1"])
    assert a.positioned(1) == {"news.old": [(1, "o1")]}
    assert a.seqs == [1]  # the 4th word: the process-wide sequence
    a.close()

    # Away: news.new gets its first messages; other.z is not matched.
    publish(pub, "news.old", ["o2"])
    publish(pub, "news.new", ["n1", "n2"])
    publish(pub, "other.z", ["z"])
    publish(pub, "news.new", ["n3"])
    b = ChannelClient(port)
    b.send("RESUME", f"RESUME news.old {epoch} 1", f"RESUME * {epoch} 1", "SUB news.*")
    got = b.positioned(4)
    assert got == {"news.old": [(2, "o2")], "news.new": [(1, "n1"), (2, "n2"), (3, "n3")]}
    assert b.notices == [("$sys.ok", f"RESUME {epoch}"),
                         ("$sys.resumed", f"news.old {epoch} 2 ok"),
                         ("$sys.resumed", f"* {epoch} 2 ok"),
                         ("$sys.resumed", f"news.new {epoch} 1 ok"),
                         ("$sys.ok", "SUB news.*")]
    publish(pub, "news.new", ["n4"])
    assert b.positioned(1) == {"news.new": [(4, "n4")]}
    assert b.seqs[-1] == 7  # o1 o2 n1 n2 z n3 n4
    # A second SUB overlapping the first replays nothing again.
    b.send("SUB news.>", "PING")
    assert b.notice("$sys.ok") == "SUB news.>"
    assert b.notice("$sys.pong") == ""
    b.close()

    # Outside the window (3 per channel): news.late's first 2 messages are gone, and told.
    publish(pub, "news.late", [f"l{i}" for i in range(1, 6)])
    c = ChannelClient(port)
    c.send("RESUME", f"RESUME news.old {epoch} 2", f"RESUME news.new {epoch} 4",
           f"RESUME * {epoch} 7", "SUB news.*")
    got = c.positioned(3)
    assert got == {"news.late": [(3, "l3"), (4, "l4"), (5, "l5")]}
    assert ("$sys.resumed", f"news.late {epoch} 3 gap 2") in c.notices

    # A sequence ahead of the server, or a second RESUME *, is refused; the connection stays.
    d = ChannelClient(port)
    d.send(f"RESUME * {epoch} 99", "RESUME *", "RESUME *", "PING")
    assert d.notice("$sys.error").startswith("bad-position RESUME *: sequence 99 is ahead")
    assert d.notice("$sys.resumed") == f"* {epoch} 13 ok"
    assert d.notice("$sys.error").startswith("bad-position RESUME *: sent already")
    assert d.notice("$sys.pong") == ""


def test_sub_resume_gets_a_channel_first_published_while_away(procs, tmp_path):
    """`sub 'news.*' --resume --reconnect`, away while news.new got its first messages, gets
    them on reconnect exactly once, in order, and keeps the global sequence in its file."""
    pos = tmp_path / "pos.txt"
    server, port = serve(procs)
    proxy = FaultProxy(port)
    try:
        client = procs.framecast("sub", "--resume", "--reconnect", "--offset-file", str(pos),
                                 "-o", "json", "-n", "6", f"127.0.0.1:{proxy.port}", "news.*")
        wait_until(lambda: b"subscribed to 1 pattern" in client.stderr, "subscribed")
        pub = ChannelClient(port)
        publish(pub, "news.old", ["o1"])
        wait_until(lambda: client.stdout.count(b"\n") >= 1, "o1 delivered")
        # Away: the proxy reaches no server until the messages are published.
        proxy.set_targets([free_port()])
        assert proxy.cut() == 1
        wait_until(lambda: b"reconnecting" in client.stderr, "the client is away")
        publish(pub, "news.new", ["n1", "n2"])
        publish(pub, "news.old", ["o2"])
        publish(pub, "other.z", ["z"])
        publish(pub, "news.new", ["n3"])
        proxy.set_targets([port])
        wait_until(lambda: client.stdout.count(b"\n") >= 5, "the missed messages delivered")
        publish(pub, "news.new", ["n4"])
        assert client.wait() == 0, client.stderr[-2000:]
        lines = json_lines(client)
        assert len(lines) == 6
        for ch, want in (("news.old", ["o1", "o2"]), ("news.new", ["n1", "n2", "n3", "n4"])):
            mine = [(m["offset"], m["payload"]) for m in lines if m["channel"] == ch]
            assert mine == list(enumerate(want, 1)), lines
        assert b"messages lost" not in client.stderr
        epoch = pos.read_text().split(" ")[0]
        assert sorted(pos.read_text().splitlines()) == \
            [f"{epoch} 2 news.old", f"{epoch} 4 news.new", f"{epoch} 7 *"]
    finally:
        proxy.close()

