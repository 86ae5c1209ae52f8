"""`framecast send` against Python peers on loopback: every message arrives as one frame, byte for
byte, and send exits only once the peer has everything."""
import subprocess
import time

from framecast_test import DEADLINE, frame
from test_connect import PEER, connect, finished, free_port, start_peer

# Reads everything until the client's EOF (counting recv calls), prints it as hex, then closes.
RECORDER = """
data = b""
recvs = 0
while True:
    chunk = c.recv(65536)
    if not chunk:
        break
    data += chunk
    recvs += 1
print("recvs", recvs, flush=True)
print("data", data.hex(), flush=True)
c.close()
"""


def recorded(peer):
    m = peer.wait_for(rb"data ([0-9a-f]*)\n", stream="out")
    return bytes.fromhex(m.group(1).decode())


def send(procs, port, *args, **kw):
    return procs.framecast("send", f"127.0.0.1:{port}", *args, **kw)


def test_each_argument_is_one_frame(procs):
    peer, port = start_peer(procs, RECORDER)
    messages = ["hello", "", "two words", "émoji 🎉 àccénts"]
    rc, out, err = finished(send(procs, port, *messages))
    assert rc == 0, err
    assert recorded(peer) == b"".join(frame(m) for m in messages)


def test_each_stdin_line_is_one_frame(procs):
    peer, port = start_peer(procs, RECORDER)
    client = send(procs, port, stdin=subprocess.PIPE)
    client.p.stdin.write("one\n\nthrée 🎉\nno newline at the end".encode())
    client.p.stdin.close()
    rc, out, err = finished(client)
    assert rc == 0, err
    assert recorded(peer) == b"".join(frame(m) for m in ["one", "", "thrée 🎉", "no newline at the end"])


def test_many_small_frames_are_batched(procs):
    peer, port = start_peer(procs, RECORDER)
    lines = [f"line {i}" for i in range(50000)]
    client = send(procs, port, stdin=subprocess.PIPE)
    client.p.stdin.write(("\n".join(lines) + "\n").encode())
    client.p.stdin.close()
    rc, out, err = finished(client)
    assert rc == 0, err
    assert recorded(peer) == b"".join(frame(m) for m in lines)
    recvs = int(peer.wait_for(rb"recvs (\d+)", stream="out").group(1))
    assert recvs < 5000, f"{recvs} reads for 50000 frames: writes are not batched"


def test_empty_input_sends_nothing_and_closes_cleanly(procs):
    peer, port = start_peer(procs, RECORDER)
    rc, out, err = finished(send(procs, port))  # stdin is /dev/null
    assert rc == 0, err
    assert recorded(peer) == b""


def test_waits_for_the_peer_to_read_everything(procs):
    """A slow reader still gets every byte: send exits after the peer's EOF, not after write()."""
    peer, port = start_peer(procs, """
time.sleep(1)  # a slow reader is the subject (not synchronisation)
data = b""
while True:
    chunk = c.recv(1000)
    if not chunk:
        break
    data += chunk
    time.sleep(0.001)  # and reads slowly
print("data", data.hex(), flush=True)
c.close()
""")
    big = "z" * 1_000_000
    started = time.monotonic()
    # The peer takes about 2 s to read it all; on a loaded machine more than send's default
    # 5 s close timeout, which is not what this test is about.
    client = send(procs, port, "--close-timeout", "60", stdin=subprocess.PIPE)
    client.p.stdin.write(f"{big}\nafter\n".encode())
    client.p.stdin.close()
    rc, out, err = finished(client)
    assert rc == 0, err
    assert time.monotonic() - started > 1  # it waited for the peer's EOF
    assert b"did not close" not in err
    assert recorded(peer) == frame(big) + frame("after")


def test_a_peer_that_talks_back_and_never_closes(procs):
    """The tutorial's server never reads and never closes: send discards what it sends, and gives
    up waiting for its EOF after --close-timeout."""
    peer, port = start_peer(procs, """
for i in range(1000):
    c.sendall(frame(f"chatter {i}"))
time.sleep(30)  # never closes: the subject (not synchronisation)
""")
    started = time.monotonic()
    rc, out, err = finished(send(procs, port, "--close-timeout", "0.5", "hello"))
    assert rc == 0, err
    assert time.monotonic() - started < 10
    assert b"did not close the connection within 0.5s" in err


def test_send_then_connect_round_trips_utf8(procs):
    """What send writes, a peer relays unchanged to connect: emoji and accents byte-exact."""
    messages = ["ascii", "àéîõü ÇÑ", "🎉🚀 emoji", "日本語のテキスト", "mixed é 🎉 z"]
    peer, port = start_peer(procs, """
data = b""
while True:
    chunk = c.recv(65536)
    if not chunk:
        break
    data += chunk
c.close()
c, _ = s.accept()
c.sendall(data)
c.close()
""")
    rc, out, err = finished(send(procs, port, *messages))
    assert rc == 0, err
    rc, out, err = finished(connect(procs, port, "--buffer", "16"))
    assert rc == 0, err
    assert out == "".join(m + "\n" for m in messages).encode()


def test_code_point_lengths(procs):
    peer, port = start_peer(procs, RECORDER)
    rc, out, err = finished(send(procs, port, "--length-unit", "code-points", "è🎉"))
    assert rc == 0, err
    assert recorded(peer) == b"2         " + "è🎉".encode()


def test_invalid_utf8_line_in_code_point_mode(procs):
    peer, port = start_peer(procs, RECORDER)
    client = send(procs, port, "--length-unit", "code-points", stdin=subprocess.PIPE)
    client.p.stdin.write(b"good\nbad \xff\nnever sent\n")
    client.p.stdin.close()
    rc, out, err = finished(client)
    assert rc == 9, err
    assert b"line 2" in err
    assert recorded(peer) == frame("good")


def test_header_size(procs):
    peer, port = start_peer(procs, RECORDER)
    rc, out, err = finished(send(procs, port, "--header-size", "4", "hello"))
    assert rc == 0, err
    assert recorded(peer) == b"5   hello"


def test_message_too_long_for_the_header(procs):
    rc, out, err = finished(send(procs, free_port(), "--header-size", "1", "0123456789"))
    assert rc == 5, err
    assert b"message 1" in err


def test_connection_refused(procs):
    rc, out, err = finished(send(procs, free_port(), "hello"))
    assert rc == 3, err
    assert b"Connection refused" in err


def test_peer_resets_while_we_send(procs):
    peer, port = start_peer(procs, """
import struct
c.recv(10)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()  # RST
time.sleep(5)  # the peer process stays; nothing waits on this
""")
    client = send(procs, port, stdin=subprocess.PIPE)
    try:
        client.p.stdin.write(b"x" * 20_000_000 + b"\n")
        client.p.stdin.close()
    except BrokenPipeError:
        pass
    rc, out, err = finished(client)
    assert rc == 1, err
    assert b"reset" in err.lower() or b"broken pipe" in err.lower()


def test_a_line_longer_than_max_message_is_refused_not_buffered(procs):
    """Every buffer has a bound: a stdin line with no newline in sight is not held whole."""
    import socket as _socket
    srv = _socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    p = procs.framecast("send", f"127.0.0.1:{port}", "--max-message", "64KiB", stdin=subprocess.PIPE)
    try:
        p.p.stdin.write(b"x" * (1 << 20))
        p.p.stdin.close()
    except BrokenPipeError:
        pass
    rc = p.wait(timeout=20)
    srv.close()
    assert rc == 5, p.stderr
    assert b"line 1 is longer than the largest message (65536 bytes): at least " in p.stderr
    assert b"(--max-message)" in p.stderr  # the CLI names the flag
