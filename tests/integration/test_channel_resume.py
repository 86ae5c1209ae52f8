"""Resume on channels (docs/resume.md#channels): `serve --channels --resume` gives every channel
its own offsets and window. Raw protocol over real sockets on loopback: a wildcard subscriber
gets positions naming the channel, a resume after a disconnect gets exactly the missed messages
of each channel, a position outside a channel's window is told `gap`, and one from before a
restart `epoch`; plain channels clients see the same bytes as without --resume."""
from channel_resume_wire import ChannelClient, publish
from framecast_test import connect, frame, FrameReader


def serve(procs, *args):
    return procs.serve("--channels", "--resume", *args)


def resume(port, positions, patterns=("prices.*",)):
    """Connects, sends RESUME, a RESUME per channel position, then the SUBs; returns the client,
    the epoch and the answers {channel: [NEXT, STATUS...]}."""
    c = ChannelClient(port)
    c.send("RESUME", *[f"RESUME {ch} {ep} {last}" for ch, (ep, last) in positions.items()],
           *[f"SUB {p}" for p in patterns])
    epoch = c.notice("$sys.ok").split(" ")[1]
    answers = {}
    for _ in positions:
        words = c.notice("$sys.resumed").split(" ")
        answers[words[0]] = words[2:]
        assert words[1] == epoch
    return c, epoch, answers


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
