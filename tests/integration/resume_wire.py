"""The resume protocol from the client's side (docs/resume.md), for tests that speak it raw."""
from framecast_test import FrameReader, connect, frame


def resume_request(port, rest):
    """A raw resuming client: sends the request, returns (socket, reader, answer words)."""
    s = connect(port)
    s.sendall(frame("@resume " + rest))
    r = FrameReader(s)
    while True:  # frames queued before the request was read come first: not ours
        p = r.read()
        if p.startswith(b"@resume"):
            return s, r, p.decode().split(" ")


def read_pieces_counted(r, want):
    """Reads position frames and their messages until `want` messages: [(offset, payload)], and
    the number of position frames seen."""
    out, pieces = [], 0
    while len(out) < want:
        first, count = (int(x) for x in r.read().split(b" "))
        pieces += 1
        for i in range(count):
            out.append((first + i, r.read()))
    return out, pieces


def read_pieces(r, want):
    """Position frames and their messages until `want` messages: [(offset, payload)]."""
    return read_pieces_counted(r, want)[0]
