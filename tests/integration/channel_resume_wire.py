"""Resume on channels (docs/resume.md#channels) from the client's side, raw, for the tests."""
from framecast_test import FrameReader, connect, frame


class ChannelClient:
    """A raw channels client: commands out, pairs in; position pairs ($sys.pos) counted."""

    def __init__(self, port, sock=None):
        self.sock = sock or connect(port)
        self.reader = FrameReader(self.sock)
        self.notices = []  # notices read by positioned(), in order
        self.seqs = []  # the sequences of the position pairs read (after "RESUME *")

    def send(self, *commands):
        self.sock.sendall(b"".join(frame(c) for c in commands))

    def pair(self):
        return self.reader.read().decode(), self.reader.read()

    def notice(self, want):
        """The next notice on channel `want` (notices and deliveries are not interleaved here:
        the test asks for one only when nothing else is on its way)."""
        channel, payload = self.pair()
        assert channel == want, (channel, payload)
        return payload.decode()

    def positioned(self, want):
        """Reads until `want` messages: {channel: [(offset, payload)]}; notices -> self.notices."""
        got, n = {}, 0
        while n < want:
            channel, payload = self.pair()
            if channel != "$sys.pos":
                assert channel.startswith("$"), f"a delivery without a position: {channel}"
                self.notices.append((channel, payload.decode()))
                continue
            words = payload.decode().split(" ")
            assert len(words) in (3, 4), words
            name, first, count = words[:3]
            self.seqs += [int(w) for w in words[3:]]
            for i in range(int(count)):
                ch, p = self.pair()
                assert ch == name
                got.setdefault(name, []).append((int(first) + i, p.decode()))
            n += int(count)
        return got

    def close(self):
        self.sock.close()


def publish(port_or_client, channel, payloads):
    """Publishes each payload to `channel` and waits for the PING's pong: all were handled (each
    is its own read's unit when sent one by one)."""
    c = port_or_client
    for p in payloads:
        c.send("PUB " + channel, p, "PING")
        assert c.notice("$sys.pong") == ""


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
