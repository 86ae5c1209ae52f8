"""`framecast connect` against real peers on loopback: the tutorial's server.py, and Python peers
written from the tutorial's protocol that chunk the byte stream in every awkward way."""
import base64
import json
import os
import socket
import subprocess
import time

import pytest

from framecast_test import free_port
from framecast_test import BIN, DEADLINE, FrameReader, frame, tutorial_server_source, wait_until

# A one-connection peer: listens on 127.0.0.1 port 0, prints "port N", accepts, runs BODY with
# the connection in `c`. frame() is the tutorial's framing; go() waits for the test's "go" line
# on stdin (start the peer with stdin=subprocess.PIPE); delivered(c) waits until the other end's
# kernel has acknowledged all that was sent (nothing left for an RST to discard). A peer's
# closing time.sleep() keeps the connection open while the test runs: it is no synchronisation.
PEER = r'''
import fcntl, socket, struct, sys, termios, time
HEADERSIZE = 10
def frame(p, h=HEADERSIZE):
    if isinstance(p, str):
        p = p.encode()
    return f"{len(p):<{h}}".encode() + p
def go():
    if sys.stdin.readline().strip() != "go":
        sys.exit("the test never said go")
def delivered(c, timeout=20):
    deadline = time.monotonic() + timeout
    while struct.unpack("i", fcntl.ioctl(c, termios.TIOCOUTQ, b"\0" * 4))[0]:  # SIOCOUTQ
        if time.monotonic() > deadline:
            sys.exit("sent data never acknowledged")
        time.sleep(0.01)  # poll interval (bounded above)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(8)
print("port", s.getsockname()[1], flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
'''


def start_peer(procs, body, **kw):
    peer = procs.python(PEER + body, **kw)
    port = int(peer.wait_for(rb"port (\d+)", stream="out").group(1))
    return peer, port


def say_go(peer):
    peer.p.stdin.write(b"go\n")
    peer.p.stdin.flush()


def accept_queue_length(port):
    """Connections waiting in the accept queue of the IPv4 listener on `port` (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(":%04X" % port) and fields[3] == "0A":  # LISTEN
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no listener on port {port} in /proc/net/tcp")


def connect(procs, port, *args, **kw):
    return procs.framecast("connect", f"127.0.0.1:{port}", *args, **kw)


def finished(proc, timeout=DEADLINE):
    rc = proc.wait(timeout=timeout)
    return rc, proc.stdout, proc.stderr


# --- the tutorial's own server ----------------------------------------------------------------

def test_tutorial_server_with_a_16_byte_buffer(procs):
    server = procs.python(tutorial_server_source(sleep=0.1))
    port = int(server.wait_for(rb"port (\d+)", stream="out").group(1))
    client = connect(procs, port, "--buffer", "16", "--count", "3")
    rc, out, err = finished(client)
    assert rc == 0, err
    lines = out.decode().split("\n")
    assert lines[0] == "Welcome to the server!"
    assert lines[1].startswith("The time is ") and float(lines[1][12:]) > 0
    assert lines[2].startswith("The time is ") and float(lines[2][12:]) > 0
    assert lines[3:] == [""]


def test_tutorial_server_in_code_point_mode_with_non_ascii_text(procs):
    """The tutorial frames with len(str): code points, not bytes. --length-unit code-points reads
    it right; in bytes mode the same stream mis-frames and is reported as a malformed header."""
    welcome = "Benvenuti nel server! è così 🎉"
    source = tutorial_server_source(sleep=0.1).replace("Welcome to the server!", welcome)
    server = procs.python(source)
    port = int(server.wait_for(rb"port (\d+)", stream="out").group(1))
    client = connect(procs, port, "--buffer", "16", "--count", "2", "--length-unit", "code-points")
    rc, out, err = finished(client)
    assert rc == 0, err
    lines = out.decode().split("\n")
    assert lines[0] == welcome
    assert lines[1].startswith("The time is ")

    server = procs.python(source)  # the tutorial's server serves one client in its life
    port = int(server.wait_for(rb"port (\d+)", stream="out").group(1))
    client = connect(procs, port, "--buffer", "16")
    rc, out, err = finished(client)
    assert rc == 4, err
    assert b"malformed frame header" in err


# --- chunking ---------------------------------------------------------------------------------

PAYLOADS = [f"message {i} " + "x" * (i % 37) for i in range(1000)]


@pytest.mark.parametrize("buffer", ["16", "1MiB", "256KiB"])
def test_a_thousand_frames_in_one_send(procs, buffer):
    peer, port = start_peer(procs, f"""
payloads = [f"message {{i}} " + "x" * (i % 37) for i in range(1000)]
c.sendall(b"".join(frame(p) for p in payloads))
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--buffer", buffer))
    assert rc == 0, err
    assert out.decode().split("\n") == PAYLOADS + [""]


def test_a_frame_one_byte_at_a_time(procs):
    peer, port = start_peer(procs, """
data = frame("first") + frame("") + frame("the third message, sent byte by byte")
for b in data:
    c.send(bytes([b]))
    time.sleep(0.002)  # one byte per read on the other side: the subject of the test
c.close()
""")
    rc, out, err = finished(connect(procs, port))
    assert rc == 0, err
    assert out == b"first\n\nthe third message, sent byte by byte\n"


@pytest.mark.parametrize("buffer", ["1", "7", "16", "64"])
@pytest.mark.parametrize("output", ["lines", "raw", "framed"])
def test_header_and_payload_straddle_every_buffer_boundary(procs, buffer, output):
    """Lengths 0..40 back to back: with any read size, reads end at every offset of headers and
    payloads."""
    payloads = [bytes((65 + (i + j) % 26) for j in range(i)) for i in range(41)]
    stream = b"".join(frame(p) for p in payloads)
    peer, port = start_peer(procs, f"""
c.sendall({stream!r})
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--buffer", buffer, "--output", output))
    assert rc == 0, err
    expected = {"lines": b"".join(p + b"\n" for p in payloads),
                "raw": b"".join(payloads),
                "framed": stream}[output]
    assert out == expected


def test_peer_pausing_inside_header_and_payload(procs):
    peer, port = start_peer(procs, """
data = frame("héllo wörld") + frame("second")
for cut in (3, 10, 14, 20, len(data)):
    c.send(data[:cut]); data = data[cut:]; time.sleep(0.05)  # the pauses are the subject
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--buffer", "16"))
    assert rc == 0, err
    assert out == "héllo wörld\nsecond\n".encode()


def test_output_is_written_when_the_stream_goes_quiet(procs):
    """stdout is a pipe here (batched), yet a message shows up while the peer is still connected:
    output is flushed whenever the socket has nothing more to read."""
    peer, port = start_peer(procs, """
c.sendall(frame("first") + frame("second"))
time.sleep(30)
""")
    client = connect(procs, port)
    client.wait_for(rb"^first\nsecond\n$", stream="out", timeout=5)
    assert client.p.poll() is None


def write_calls(proc):
    with open(f"/proc/{proc.p.pid}/io") as io:
        return int(next(l for l in io if l.startswith("syscw:")).split()[1])


@pytest.mark.parametrize("flag, expect_batched", [(None, True), ("--line-buffered", False)])
def test_stdout_is_written_in_batches(procs, flag, expect_batched):
    """1000 messages in one burst cost a handful of write() calls, not one per message (unless
    --line-buffered asks for that)."""
    peer, port = start_peer(procs, """
go()  # once the test has counted connect's write calls so far
c.sendall(b"".join(frame(f"message {i}") for i in range(1000)))
time.sleep(30)
""", stdin=subprocess.PIPE)
    client = connect(procs, port, *([flag] if flag else []))
    client.wait_for(rb"connected to")
    before = write_calls(client)  # the runtime's own (sanitizers write at start-up)
    say_go(peer)
    client.wait_for(rb"message 999\n", stream="out", timeout=10)
    writes = write_calls(client) - before
    if expect_batched:
        assert writes < 20, f"{writes} write calls for 1000 messages"
    else:
        assert writes >= 1000


def test_ipv6_loopback(procs):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    source = PEER.replace("s = socket.socket()", "s = socket.socket(socket.AF_INET6)").replace(
        's.bind(("127.0.0.1", 0))', 's.bind(("::1", 0))') + """
c.sendall(frame("over IPv6"))
c.close()
"""
    peer = procs.python(source)
    port = int(peer.wait_for(rb"port (\d+)", stream="out").group(1))
    rc, out, err = finished(procs.framecast("connect", f"[::1]:{port}"))
    assert rc == 0, err
    assert out == b"over IPv6\n"
    assert f"connected to [::1]:{port}".encode() in err


# --- output formats ---------------------------------------------------------------------------

def test_json_output_text_base64_and_escaping(procs):
    payloads = [b"plain", "emoji 🎉 accents àèìòù".encode(), b'quote " backslash \\ tab \t nl \n',
                b"\x00\x01\x1f\x7f", b"\xff\xfe not utf-8", b"", b"\xc3"]
    peer, port = start_peer(procs, f"""
c.sendall(b"".join(frame(p) for p in {payloads!r}))
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--output", "json"))
    assert rc == 0, err
    lines = out.split(b"\n")
    assert lines[-1] == b""
    objects = [json.loads(line) for line in lines[:-1]]
    assert [o["seq"] for o in objects] == list(range(1, len(payloads) + 1))
    for o, p in zip(objects, payloads):
        assert o["length"] == len(p)
        assert time.mktime(time.strptime(o["time"][:19], "%Y-%m-%dT%H:%M:%S")) > 0
        assert o["time"].endswith("Z")
        try:
            text = p.decode("utf-8")
        except UnicodeDecodeError:
            assert "text" not in o
            assert base64.b64decode(o["base64"]) == p
        else:
            assert "base64" not in o
            assert o["text"] == text


def test_framed_output_reemits_the_bytes_exactly(procs):
    """Headers as the peer wrote them (even unusual but valid spacing), so the output can be piped
    into another framecast peer."""
    stream = b"5         hello   3      abc0         " + frame("🎉 end")
    peer, port = start_peer(procs, f"""
c.sendall({stream!r})
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--output", "framed", "--buffer", "4"))
    assert rc == 0, err
    assert out == stream


def test_header_size_option(procs):
    peer, port = start_peer(procs, """
c.sendall(frame("four", 4) + frame("byte headers", 4))
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--header-size", "4", "--buffer", "3"))
    assert rc == 0, err
    assert out == b"four\nbyte headers\n"


# --- large messages ---------------------------------------------------------------------------

def sanitized_binary():
    with open(BIN, "rb") as binary:
        code = binary.read()
    return b"__asan_init" in code or b"__tsan_init" in code


def startup_peak_kib():
    """Peak RSS of the binary doing nothing (`--version`)."""
    p = subprocess.Popen([BIN, "--version"], stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(p.pid, 0)
    return usage.ru_maxrss  # KiB on Linux


# ASan and TSan add shadow memory and allocator caches of their own, whatever the message size:
# an ASan connect peaks near 200 MiB printing its version, and that grows with the binary. So a
# sanitized connect is bounded by its own start-up peak plus 64 MiB, with a message well above
# that: buffering the whole message must exceed the limit in either build.
SANITIZED = sanitized_binary()
BIG = (300 if SANITIZED else 50) * 1000 * 1000
RAW_LIMIT_KIB = startup_peak_kib() + 64 * 1024 if SANITIZED else 16 * 1024


def test_raw_output_streams_a_message_bigger_than_its_memory(procs):
    """50 MB in one frame (300 MB in sanitizer builds) passes through `--output raw` with
    connect's peak RSS far below the message size."""
    peer, port = start_peer(procs, f"""
chunk = bytes(range(256)) * 4096  # 1 MiB
c.sendall(b"{BIG:<10}")
left = {BIG}
while left:
    n = min(left, len(chunk)); c.sendall(chunk[:n]); left -= n
go()  # once the test has read connect's peak RSS
c.sendall(frame("after"))
c.close()
""", stdin=subprocess.PIPE)
    p = subprocess.Popen([BIN, "connect", f"127.0.0.1:{port}", "--output", "raw",
                          "--max-message", "1GB"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    received, ok, peak_kib = 0, True, None
    pattern = bytes(range(256))
    tail = b""
    while True:
        chunk = p.stdout.read1(1 << 20)
        if not chunk:
            break
        n = min(len(chunk), BIG - received)
        body = chunk[:n]
        # The payload is bytes 0..255 repeating: check it without keeping 50 MB around.
        start = received % 256
        if body != (pattern * ((len(body) + start) // 256 + 2))[start:start + len(body)]:
            ok = False
        received += n
        tail += chunk[n:]
        if received == BIG and peak_kib is None:
            with open(f"/proc/{p.pid}/status") as status:
                peak_kib = int(next(l for l in status if l.startswith("VmHWM:")).split()[1])
            say_go(peer)
    rc = p.wait(timeout=DEADLINE)
    err = p.stderr.read()
    assert rc == 0, err
    assert received == BIG and ok
    assert tail == b"after"
    print(f"peak RSS of connect: {peak_kib} KiB")
    assert peak_kib < RAW_LIMIT_KIB, f"connect peaked at {peak_kib} KiB for a {BIG}-byte message"


def test_lines_output_of_messages_around_the_output_buffer_size(procs):
    """-o lines writes a message of 256 KiB or more straight from where it was read, not copied
    into its output buffer first: small and large messages in any order must keep their order,
    bytes and newlines on that path too."""
    sizes = [3, 262143, 262144, 5, (1 << 20) + 7, 0, 11, 300000]
    make = "lambda i, n: bytes(97 + (i + j) % 26 for j in range(n))"
    payloads = [eval(make)(i, n) for i, n in enumerate(sizes)]
    peer, port = start_peer(procs, f"""
make = {make}
c.sendall(b"".join(frame(make(i, n)) for i, n in enumerate({sizes!r})))
delivered(c)
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--output", "lines", "--max-message", "2MiB"))
    assert rc == 0, err
    assert out == b"".join(p + b"\n" for p in payloads)


def test_lines_output_refuses_a_message_above_max_message(procs):
    peer, port = start_peer(procs, """
c.sendall(b"1000      " + b"y" * 1000)
time.sleep(5)
""")
    rc, out, err = finished(connect(procs, port, "--max-message", "100"))
    assert rc == 5, err
    assert b"announces 1000 bytes, above the maximum of 100" in err
    assert out == b""


# --- errors -----------------------------------------------------------------------------------

def test_connection_refused(procs):
    rc, out, err = finished(connect(procs, free_port()))
    assert rc == 3, err
    assert b"Connection refused" in err


def test_host_not_resolved(procs):
    rc, out, err = finished(procs.framecast("connect", "no-such-host.invalid:1243"))
    assert rc == 3, err
    assert b"cannot resolve 'no-such-host.invalid'" in err


def test_bad_endpoint_is_a_usage_error(procs):
    rc, out, err = finished(procs.framecast("connect", "127.0.0.1:99999"))
    assert rc == 2, err


def test_malformed_header_shows_the_bytes(procs):
    peer, port = start_peer(procs, """
c.sendall(frame("fine") + b"ab        hello")
time.sleep(5)
""")
    rc, out, err = finished(connect(procs, port, "--buffer", "16"))
    assert rc == 4, err
    assert out == b"fine\n"
    assert b"malformed frame header b'ab        '" in err


def test_closed_in_the_middle_of_a_payload(procs):
    peer, port = start_peer(procs, """
c.sendall(frame("whole") + b"28        " + b"1234567")
c.close()
""")
    rc, out, err = finished(connect(procs, port))
    assert rc == 6, err
    assert out == b"whole\n"
    assert b"closed after 7 of 28 payload bytes" in err


def test_closed_in_the_middle_of_a_header(procs):
    peer, port = start_peer(procs, """
c.sendall(frame("whole") + b"12 ")
c.close()
""")
    rc, out, err = finished(connect(procs, port))
    assert rc == 6, err
    assert b"closed after 3 of 10 header bytes" in err


def test_reset_between_messages(procs):
    peer, port = start_peer(procs, """
import struct
c.sendall(frame("before the reset"))
delivered(c)
go()  # once connect has printed the message
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
time.sleep(5)
""", stdin=subprocess.PIPE)
    client = connect(procs, port)
    client.wait_for(rb"^before the reset\n", stream="out")
    say_go(peer)
    rc, out, err = finished(client)
    assert rc == 1, err
    assert out == b"before the reset\n"
    assert b"connection lost: Connection reset by peer" in err


def test_reset_in_the_middle_of_a_message(procs):
    peer, port = start_peer(procs, """
import struct
c.sendall(b"28        1234567")
delivered(c)
go()  # once connect is connected: then it reads the bytes before it sees the reset
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
time.sleep(5)
""", stdin=subprocess.PIPE)
    client = connect(procs, port)
    client.wait_for(rb"connected to 127\.0\.0\.1:%d" % port)
    say_go(peer)
    rc, out, err = finished(client)
    assert rc == 6, err
    assert b"Connection reset by peer: connection closed after 7 of 28 payload bytes" in err


def test_unreachable_address(procs):
    """However the network answers (refusal, unreachable, silence), exit 3 within the timeout."""
    started = time.monotonic()
    rc, out, err = finished(procs.framecast("connect", "192.0.2.1:9", "--connect-timeout", "0.5"))
    assert rc == 3, err
    assert time.monotonic() - started < 10
    assert b"connect to 192.0.2.1:9" in err, err


def test_connect_timeout_when_the_peer_never_answers(procs):
    """A listener whose accept queue is full drops new SYNs: the connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    # With a backlog of 0, one finished handshake fills the accept queue; later SYNs are dropped.
    wait_until(lambda: accept_queue_length(port) >= 1, "a connection in the full accept queue")
    try:
        started = time.monotonic()
        rc, out, err = finished(connect(procs, port, "--connect-timeout", "0.5"))
        assert rc == 3, err
        assert time.monotonic() - started < 10
        assert f"timed out connecting to 127.0.0.1:{port} after 0.5s".encode() in err
    finally:
        for f in fillers:
            f.close()
        listener.close()


def test_timeout_when_nothing_arrives(procs):
    peer, port = start_peer(procs, """
c.sendall(frame("only one"))
time.sleep(30)
""")
    started = time.monotonic()
    rc, out, err = finished(connect(procs, port, "--timeout", "0.5"))
    assert rc == 7, err
    assert time.monotonic() - started < 10
    assert out == b"only one\n"
    assert b"nothing received for 0.5s" in err


def test_timeout_is_reset_by_every_message(procs):
    peer, port = start_peer(procs, """
for i in range(6):
    c.sendall(frame(str(i))); time.sleep(0.2)  # gaps under --timeout: the subject
c.close()
""")
    rc, out, err = finished(connect(procs, port, "--timeout", "1"))
    assert rc == 0, err
    assert out == b"0\n1\n2\n3\n4\n5\n"


def test_invalid_utf8_in_code_point_mode(procs):
    peer, port = start_peer(procs, """
c.sendall(b"2         \\xff\\xfe")
time.sleep(5)
""")
    rc, out, err = finished(connect(procs, port, "--length-unit", "code-points"))
    assert rc == 9, err
    assert b"not valid UTF-8" in err


# --- --count, --send, --reconnect ---------------------------------------------------------------

def test_count_exits_after_n_messages_while_the_peer_goes_on(procs):
    peer, port = start_peer(procs, """
for i in range(10):
    c.sendall(frame(f"m{i}")); time.sleep(0.05)  # the peer goes on after --count: the subject
time.sleep(30)
""")
    rc, out, err = finished(connect(procs, port, "--count", "3", "--buffer", "16"), timeout=10)
    assert rc == 0, err
    assert out == b"m0\nm1\nm2\n"


def test_count_not_reached_when_the_peer_closes_is_an_error(procs):
    peer, port = start_peer(procs, """
for i in range(3):
    c.sendall(frame(f"m{i}"))
""")
    rc, out, err = finished(connect(procs, port, "--count", "5"), timeout=10)
    assert rc == 1, err
    assert out == b"m0\nm1\nm2\n"
    assert b"closed the connection after 3 of 5 messages (--count)" in err


def test_count_in_framed_mode_stops_at_the_frame_end(procs):
    stream = b"".join(frame(f"frame {i}") for i in range(5))
    peer, port = start_peer(procs, f"""
c.sendall({stream!r})
time.sleep(30)
""")
    rc, out, err = finished(connect(procs, port, "--count", "2", "-o", "framed"), timeout=10)
    assert rc == 0, err
    assert out == frame("frame 0") + frame("frame 1")


def test_send_both_directions_on_one_connection(procs):
    """The peer greets, then echoes each frame it reads; connect --send sends stdin lines while
    printing what comes back."""
    peer, port = start_peer(procs, """
import threading
c.sendall(frame("hello from the peer"))
buf = b""
n = 0
while True:
    data = c.recv(65536)
    if not data:
        break
    buf += data
    while len(buf) >= 10 and len(buf) >= 10 + int(buf[:10]):
        size = int(buf[:10]); msg = buf[10:10 + size]; buf = buf[10 + size:]
        c.sendall(frame(b"echo: " + msg)); n += 1
c.sendall(frame(f"got {n} messages"))
c.close()
""")
    lines = ["first", "", "ünïcödé 🎉", "last line without newline"]
    client = connect(procs, port, "--send", "--half-close", "--buffer", "16", stdin=subprocess.PIPE)
    client.p.stdin.write("\n".join(lines).encode())
    client.p.stdin.close()
    rc, out, err = finished(client)
    assert rc == 0, err
    assert out.decode().split("\n") == (["hello from the peer"] + [f"echo: {l}" for l in lines]
                                        + ["got 4 messages", ""])


def test_send_many_lines_while_receiving(procs):
    peer, port = start_peer(procs, """
import threading
def talk():
    for i in range(2000):
        c.sendall(frame(f"tick {i}"))
talker = threading.Thread(target=talk)
talker.start()
buf = b""
got = []
while True:
    data = c.recv(65536)
    if not data:
        break
    buf += data
    while len(buf) >= 10 and len(buf) >= 10 + int(buf[:10]):
        size = int(buf[:10]); got.append(buf[10:10 + size]); buf = buf[10 + size:]
print("received", len(got), got == [f"line {i}".encode() for i in range(20000)], flush=True)
talker.join()
c.close()
""")
    client = connect(procs, port, "--send", "--half-close", stdin=subprocess.PIPE)
    client.p.stdin.write(b"".join(f"line {i}\n".encode() for i in range(20000)))
    client.p.stdin.close()
    rc, out, err = finished(client)
    assert rc == 0, err
    peer.wait_for(rb"received 20000 True", stream="out")
    assert out.decode().split("\n") == [f"tick {i}" for i in range(2000)] + [""]


def test_reconnect_to_a_peer_that_goes_away_and_comes_back(procs):
    peer, port = start_peer(procs, """
s_port = s.getsockname()[1]
c.sendall(frame("first life"))
c.close(); s.close()
go()  # once connect has been refused while the peer was away
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", s_port))
s.listen(8)
c, _ = s.accept()
c.sendall(frame("second life"))
time.sleep(30)
""", stdin=subprocess.PIPE)
    client = connect(procs, port, "--reconnect", "--count", "2", "--reconnect-max", "0.5")
    client.wait_for(rb"Connection refused; reconnecting in")
    say_go(peer)
    rc, out, err = finished(client)
    assert rc == 0, err
    assert out == b"first life\nsecond life\n"
    assert b"closed the connection; reconnecting in" in err
    assert b"Connection refused; reconnecting in" in err  # attempts while the peer was away


def test_reconnect_keeps_trying_until_the_peer_appears(procs):
    port = free_port()
    client = connect(procs, port, "--reconnect", "--count", "1", "--reconnect-max", "0.3")
    client.wait_for(rb"reconnecting in 0\.\d\ds \(attempt 3\)")
    procs.python(PEER.replace('s.bind(("127.0.0.1", 0))', f's.bind(("127.0.0.1", {port}))') + """
c.sendall(frame("finally"))
time.sleep(30)
""")
    rc, out, err = finished(client)
    assert rc == 0, err
    assert out == b"finally\n"


# --- against framecast serve ------------------------------------------------------------------

def serve_available():
    try:
        r = subprocess.run([BIN, "serve", "--help"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"not implemented" not in (r.stdout + r.stderr)


@pytest.mark.skipif(not serve_available(), reason="`framecast serve` is not implemented in this build")
def test_connect_against_framecast_serve_time_stream(procs):
    server, port = procs.serve()
    rc, out, err = finished(connect(procs, port, "--count", "2", "--timeout", "15"), timeout=30)
    assert rc == 0, err
    lines = out.split(b"\n")
    assert len(lines) == 3 and lines[2] == b""
    assert lines[0] and lines[1]


def test_send_then_keep_receiving_from_framecast_serve(procs):
    """`echo hi | framecast connect --send` against a --publish server: the end of input does
    not end the session, so what others publish afterwards still arrives."""
    server, port = procs.serve("--publish", "--welcome", "w", "--source", "time", "--interval", "0.1")
    client = connect(procs, port, "--send", "--count", "5", stdin=subprocess.PIPE)
    client.p.stdin.write(b"hello\n")
    client.p.stdin.close()
    rc, out, err = finished(client, timeout=10)
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "w" and len(lines) == 5
    assert all(l.startswith("The time is ") for l in lines[1:]), lines
    server.wait_for(rb"ignored|disconnected: closed by peer")  # it stayed until connect left
    assert b"hello" not in out
