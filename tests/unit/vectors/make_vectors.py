#!/usr/bin/env python3
"""Writes python_vectors.tsv: byte streams built with the tutorial's own expressions.

Each line: name, header size, unit (bytes|code_points), whether our encoder must reproduce the
wire exactly (1) or only decode it (0), the wire as hex, and the expected payloads as "h" + hex
joined by ','. Run: python3 tests/unit/vectors/make_vectors.py > tests/unit/vectors/python_vectors.tsv
"""
import time

HEADERSIZE = 10


def tutorial_frame(msg: str, headersize: int = HEADERSIZE) -> bytes:
    # server.py: msg = f"{len(msg):<{HEADERSIZE}}"+msg; clientsocket.send(bytes(msg,"utf-8"))
    msg = f"{len(msg):<{headersize}}" + msg
    return bytes(msg, "utf-8")


def byte_frame(payload: bytes, headersize: int = HEADERSIZE, align: str = "<", fill: str = " ") -> bytes:
    return f"{len(payload):{fill}{align}{headersize}}".encode() + payload


rows = []


def row(name, h, unit, exact, frames, payloads):
    wire = b"".join(frames)
    rows.append("\t".join([name, str(h), unit, str(exact), wire.hex(),
                           ",".join("h" + p.hex() for p in payloads) or "-"]))


welcome = "Welcome to the server!"
row("tutorial_welcome", 10, "bytes", 1, [tutorial_frame(welcome)], [welcome.encode()])
times = [f"The time is {t}" for t in (1552068299.01783, 1552068302.0181189, 1552068338.0437,
                                      time.time())]
row("tutorial_time_stream", 10, "bytes", 1, [tutorial_frame(welcome)] + [tutorial_frame(t) for t in times],
    [welcome.encode()] + [t.encode() for t in times])
row("your_message_here", 10, "bytes", 1, [f'{len("your message here!"):<10}'.encode() + b"your message here!"],
    [b"your message here!"])
row("empty_payload", 10, "bytes", 1, [byte_frame(b"")], [b""])
for h in (1, 2, 5, 20):
    ps = [b"x" * n for n in (0, 1, 9 if h == 1 else 12, 3)]
    row(f"header_size_{h}", h, "bytes", 1, [byte_frame(p, h) for p in ps], ps)
utf8 = ["héllo wörld", "emoji 😀🎉", "日本語のテキスト", "mixed ascii é 😀 end"]
row("utf8_bytes", 10, "bytes", 1, [byte_frame(s.encode()) for s in utf8], [s.encode() for s in utf8])
# The tutorial's server counts characters, then sends UTF-8 bytes: our code-point mode.
row("utf8_tutorial_code_points", 10, "code_points", 1, [tutorial_frame(s) for s in utf8],
    [s.encode() for s in utf8])
row("right_aligned", 10, "bytes", 0, [byte_frame(b"right aligned header", align=">")], [b"right aligned header"])
row("zero_padded", 10, "bytes", 0, [f"{len(b'zero padded'):010d}".encode() + b"zero padded"], [b"zero padded"])
big = bytes(range(256)) * 300
row("binary_76800", 10, "bytes", 1, [byte_frame(big)], [big])

print("\n".join(rows))
