"""The WebSocket gateway (issue 17): `framecast serve --ws HOST:PORT` against independent peers,
python3-wsproto (every byte under the test's control, ws_peer.py) and python3-websockets, beside
TCP clients of the tutorial's protocol on the same server. One framecast message = one WebSocket
message: text when the payload is valid UTF-8, else binary."""
import asyncio
import re
import socket
import subprocess
import urllib.request

import pytest
import websockets

from framecast_test import (BIN, DEADLINE, FrameReader, connect, frame, wait_for_client,
                            wait_for_log)
from ws_peer import Closed, WsPeer, raw_frame, ws_url


def serve_ws(procs, *args, **kw):
    server, port = procs.serve("--ws", "127.0.0.1:0", *args, **kw)
    host, wsport = ws_url(server)
    return server, port, wsport


def wait_for_ws_client(server, n):
    return wait_for_log(server, rb"client 127\.0\.0\.1:\d+ connected \(%d clients\)" % n)


# --- the mapping ----------------------------------------------------------------------------

def test_a_browser_and_a_tcp_client_see_the_same_messages_in_the_same_order(procs):
    server, port, wsport = serve_ws(procs, "--source", "stdin", "--welcome", "Welcome to the server!",
                                    stdin=subprocess.PIPE)
    tcp = connect(port)
    reader = FrameReader(tcp)
    wait_for_client(server, tcp)
    ws = WsPeer(wsport)
    assert ws.status == 101
    wait_for_ws_client(server, 2)
    assert reader.read() == b"Welcome to the server!"
    assert ws.recv() == "Welcome to the server!"
    lines = [b"one", "ünïcode ✓".encode(), b"\xff\xfe not utf-8", b"", b"x" * 70000]
    server.p.stdin.write(b"".join(line + b"\n" for line in lines))
    server.p.stdin.flush()
    for line in lines:
        assert reader.read() == line
        got = ws.recv()
        try:
            text = line.decode("utf-8")
            assert got == text, "valid UTF-8 arrives as a text message"
        except UnicodeDecodeError:
            assert got == line, "anything else arrives as a binary message"
    # End of input: the server flushes and says goodbye with 1001 (going away).
    server.p.stdin.close()
    assert ws.expect_close() == 1001
    assert server.wait() == 0


def test_a_burst_reaches_every_websocket_client_whole_and_in_order(procs):
    """A burst of many relay units, framed once for all WebSocket clients, and a few messages
    over a unit's bound, framed per client a part at a time between them: one client reads as
    it comes, one only after the other has read everything (its queue holds the rest), and both
    get every message, whole, in order."""
    server, port, wsport = serve_ws(procs, "--source", "stdin", "--welcome", "",
                                    "--client-buffer", "32MiB", stdin=subprocess.PIPE)
    eager, lagging = WsPeer(wsport), WsPeer(wsport)
    wait_for_ws_client(server, 2)
    lines = []
    for i in range(3000):
        # Some over a unit's bound (64 KiB): framed per client, a part at a time.
        size = 100_000 if i % 500 == 7 else i * 7 % 3001
        body = (b"%d:" % i) + bytes([97 + i % 26]) * size
        lines.append(body if i % 5 else body + b"\xff")  # every fifth one is binary
    server.p.stdin.write(b"".join(line + b"\n" for line in lines))
    server.p.stdin.flush()
    for peer in (eager, lagging):
        for i, line in enumerate(lines):
            got = peer.recv()
            want = line if i % 5 == 0 else line.decode()
            assert got == want, f"message {i}"


def test_published_fragmented_message_reaches_tcp_subscribers_as_one_frame(procs):
    server, port, wsport = serve_ws(procs, "--publish", "--welcome", "")
    tcp = connect(port)
    reader = FrameReader(tcp)
    wait_for_client(server, tcp)
    ws = WsPeer(wsport)
    wait_for_ws_client(server, 2)
    ws.send("frag", finished=False)
    ws.send("men", finished=False)
    ws.send("ted")
    ws.send(b"\x00\x01binary")
    assert reader.read() == b"fragmented"
    assert reader.read() == b"\x00\x01binary"
    tcp.sendall(frame("from tcp"))
    assert ws.recv() == "from tcp"


def test_framecast_connect_over_websocket(procs):
    server, port, wsport = serve_ws(procs, "--interval", "0.05")
    out = subprocess.run([BIN, "connect", f"ws://127.0.0.1:{wsport}/", "-n", "3"],
                         capture_output=True, timeout=DEADLINE)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0] == "Welcome to the server!"
    assert all(re.fullmatch(r"The time is \d+\.\d+", line) for line in lines[1:3]), lines


def test_connect_names_a_failed_handshake(procs):
    server, port = procs.serve()  # a framecast TCP port: no HTTP there
    out = subprocess.run([BIN, "connect", f"ws://127.0.0.1:{port}/", "-n", "1",
                          "--connect-timeout", "2"], capture_output=True, timeout=DEADLINE)
    assert out.returncode != 0
    assert b"websocket handshake with 127.0.0.1:" in out.stderr


# --- the protocol, against independent peers --------------------------------------------------

def test_ping_is_answered_and_the_server_keeps_alive(procs):
    server, port, wsport = serve_ws(procs, "--ws-ping", "0.2", "--welcome", "")
    ws = WsPeer(wsport)
    ws.ping(b"hello?")
    ev = ws.next_event()
    assert type(ev).__name__ == "Pong" and ev.payload == b"hello?"
    # Quiet connection: the server pings (wsproto's peer answers each).
    from framecast_test import wait_until
    wait_until(lambda: (ws.pending.clear() or True) and _pump(ws) and ws.pings, "a ping from the server")


def _pump(ws):
    try:
        ws._next(0.05)
    except TimeoutError:
        pass
    return True


def test_a_client_that_never_answers_pings_is_closed(procs):
    server, port, wsport = serve_ws(procs, "--ws-ping", "0.2", "--welcome", "")
    ws = WsPeer(wsport)
    ws.auto_pong = False
    wait_for_ws_client(server, 1)
    ws.sock.settimeout(DEADLINE)
    # Never read: the server's pings go unanswered, and after twice the interval it gives up.
    wait_for_log(server, rb"client 127\.0\.0\.1:\d+ disconnected")


def test_close_handshake(procs):
    server, port, wsport = serve_ws(procs, "--welcome", "")
    ws = WsPeer(wsport)
    wait_for_ws_client(server, 1)
    ws.close(1000)
    ev = ws.next_event()
    assert type(ev).__name__ == "CloseConnection" and ev.code == 1000
    ws.wait_eof()  # the server shuts its side first (RFC 6455 7.1.1), waits for ours
    ws.shutdown()
    wait_for_log(server, rb"disconnected: closed by peer")


def test_a_message_over_max_message_is_closed_with_1009(procs):
    server, port, wsport = serve_ws(procs, "--publish", "--welcome", "", "--max-message", "100")
    ws = WsPeer(wsport)
    ws.send("x" * 100)  # exactly the limit: fine
    ws.send("x" * 101)
    assert ws.expect_close_reason() == (1009, "message over 100 bytes (max message)")
    wait_for_log(server, rb"disconnected: read failed: The WebSocket message exceeded")


def test_a_huge_message_is_refused_after_the_limit_not_buffered(procs):
    server, port, wsport = serve_ws(procs, "--publish", "--welcome", "", "--max-message", "100")
    ws = WsPeer(wsport)
    # Announces 1 GiB, sends a little of it: closed at byte 101, nothing waits for the rest.
    header = bytes([0x82, 0x80 | 127]) + (1 << 30).to_bytes(8, "big") + b"\0\0\0\0"
    ws.send_raw(header + b"y" * 4096)
    assert ws.expect_close_reason() == (1009, "message over 100 bytes (max message)")


def test_invalid_utf8_in_a_text_frame_is_closed_with_1007(procs):
    server, port, wsport = serve_ws(procs, "--publish", "--welcome", "")
    ws = WsPeer(wsport)
    ws.send_raw(raw_frame(0x1, b"ok \xff\xfe"))
    assert ws.expect_close() == 1007


def test_an_unmasked_client_frame_is_a_protocol_error(procs):
    server, port, wsport = serve_ws(procs, "--publish", "--welcome", "")
    ws = WsPeer(wsport)
    ws.send_raw(raw_frame(0x2, b"unmasked", mask=False))
    assert ws.expect_close() == 1002


def test_a_handshake_trickled_a_byte_at_a_time(procs):
    server, port, wsport = serve_ws(procs)
    ws = WsPeer(wsport, trickle=True)
    assert ws.status == 101
    assert ws.recv() == "Welcome to the server!"


def test_a_handshake_that_does_not_finish_in_time_loses_its_slot(procs):
    server, port, wsport = serve_ws(procs, "--ws-handshake-timeout", "0.3")
    s = socket.create_connection(("127.0.0.1", wsport), timeout=DEADLINE)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # ... and nothing more
    s.settimeout(DEADLINE)
    assert s.recv(100) == b""


def test_an_oversized_request_header_is_refused(procs):
    server, port, wsport = serve_ws(procs)
    s = socket.create_connection(("127.0.0.1", wsport), timeout=DEADLINE)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    s.settimeout(DEADLINE)
    assert s.recv(100).startswith(b"HTTP/1.1 431")


def test_origin_allow_list(procs):
    server, port, wsport = serve_ws(procs, "--ws-origin", "http://good.example")
    bad = WsPeer(wsport, origin="http://evil.example")
    assert bad.status == 403
    assert b"not allowed" in bad.body
    good = WsPeer(wsport, origin="HTTP://GOOD.example")
    assert good.status == 101
    assert good.recv() == "Welcome to the server!"
    wait_for_ws_client(server, 1)


def test_max_clients_counts_websocket_clients(procs):
    server, port, wsport = serve_ws(procs, "--max-clients", "1")
    first = WsPeer(wsport)
    assert first.recv() == "Welcome to the server!"
    assert WsPeer(wsport).status == 503


def test_the_python_websockets_library_reads_the_stream(procs):
    server, port, wsport = serve_ws(procs, "--interval", "0.05")

    async def read_three():
        async with websockets.connect(f"ws://127.0.0.1:{wsport}/", compression=None) as ws:
            return [await asyncio.wait_for(ws.recv(), DEADLINE) for _ in range(3)]

    msgs = asyncio.run(read_three())
    assert msgs[0] == "Welcome to the server!"
    assert msgs[1].startswith("The time is ")


def test_permessage_deflate_only_when_asked(procs):
    async def extensions(wsport):
        async with websockets.connect(f"ws://127.0.0.1:{wsport}/") as ws:  # offers deflate
            await asyncio.wait_for(ws.recv(), DEADLINE)
            return [e.name for e in ws.extensions]

    _, _, plain = serve_ws(procs)
    _, _, deflating = serve_ws(procs, "--ws-deflate")
    assert asyncio.run(extensions(plain)) == []
    assert asyncio.run(extensions(deflating)) == ["permessage-deflate"]


# --- the chat room ------------------------------------------------------------------------------

def test_a_tcp_chat_client_and_a_websocket_client_in_one_room(procs):
    server, port, wsport = serve_ws(procs, "--chat")
    tcp = connect(port)
    tcp.sendall(frame("tutorial"))
    reader = FrameReader(tcp)
    wait_for_log(server, rb"tutorial joined")
    ws = WsPeer(wsport)
    ws.send("browser")
    wait_for_log(server, rb"browser joined")
    ws.send("hello from the web ✓")
    assert reader.read() == b"browser"
    assert reader.read() == "hello from the web ✓".encode()
    tcp.sendall(frame("hello from the terminal"))
    assert ws.recv() == "tutorial"
    assert ws.recv() == "hello from the terminal"


def test_a_websocket_chat_client_breaking_the_name_rules_is_closed_with_1008(procs):
    server, port, wsport = serve_ws(procs, "--chat", "--max-name", "5")
    ws = WsPeer(wsport)
    ws.send("much too long")
    assert ws.expect_close() == 1008


# --- the page ---------------------------------------------------------------------------------

def test_the_page_and_its_library_are_served(procs):
    server, port, wsport = serve_ws(procs, "--chat")
    base = f"http://127.0.0.1:{wsport}"
    with urllib.request.urlopen(base + "/", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        page = r.read().decode()
    assert "<script src=\"/framecast.js\">" in page
    with urllib.request.urlopen(base + "/framecast.js", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert "Framecast.chat" in r.read().decode()
    with urllib.request.urlopen(base + "/config.json", timeout=5) as r:
        assert b'"mode":"chat"' in r.read()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "/nothing", timeout=5)
    assert e.value.code == 404


def test_help_explains_the_websocket_options():
    out = subprocess.run([BIN, "serve", "--help"], capture_output=True, timeout=DEADLINE).stdout
    for flag in (b"--ws ", b"--ws-origin", b"--ws-deflate", b"--ws-ping", b"--ws-handshake-timeout",
                 b"--ws-trust-proxy", b"--ws-tls"):
        assert flag in out, flag


# --- addresses: --max-per-address and a trusted proxy's X-Forwarded-For ----------------------

def test_max_per_address_counts_websocket_clients_with_tcp_ones(procs):
    server, port, wsport = serve_ws(procs, "--max-per-address", "1")
    tcp = connect(port)
    wait_for_client(server, tcp)
    ws = WsPeer(wsport)
    assert ws.expect_close_reason() == (
        1008, "too many connections from this address (max per address)"), \
        "over the limit: closed at once, for policy, saying why"
    wait_for_log(server, rb"client 127\.0\.0\.1:\d+ rejected: 1 clients connected from "
                         rb"127\.0\.0\.1, the limit \(max per address\)")
    tcp.close()
    wait_for_log(server, rb"client 127\.0\.0\.1:\d+ disconnected")
    again = WsPeer(wsport)
    assert again.recv() == "Welcome to the server!", "the slot is released with the client"


def test_x_forwarded_for_is_believed_from_a_trusted_proxy_only(procs):
    server, port, wsport = serve_ws(procs, "--ws-trust-proxy", "192.0.2.1,127.0.0.1",
                                    "--max-per-address", "1")
    # The last entry is the proxy's own: the one before it was written by the client.
    a = WsPeer(wsport, headers=[("X-Forwarded-For", "198.51.100.9, 203.0.113.7")])
    assert a.recv() == "Welcome to the server!"
    wait_for_log(server, rb"client 203\.0\.113\.7 via 127\.0\.0\.1:\d+ connected \(1 clients\)")
    # Another client behind the same proxy has a slot of its own...
    b = WsPeer(wsport, headers=[("X-Forwarded-For", "203.0.113.8")])
    assert b.recv() == "Welcome to the server!"
    wait_for_log(server, rb"client 203\.0\.113\.8 via 127\.0\.0\.1:\d+ connected \(2 clients\)")
    # ...while a second connection of the first one is over its limit.
    c = WsPeer(wsport, headers=[("X-Forwarded-For", "203.0.113.7")])
    assert c.expect_close() == 1008
    wait_for_log(server, rb"client 203\.0\.113\.7 via 127\.0\.0\.1:\d+ rejected: 1 clients "
                         rb"connected from 203\.0\.113\.7")
    # A trusted proxy that says something unaccountable is refused, not believed halfway.
    bad = WsPeer(wsport, headers=[("X-Forwarded-For", "203.0.113.9, unknown")])
    assert bad.status == 400


def test_x_forwarded_for_from_anyone_else_is_ignored(procs):
    server, port, wsport = serve_ws(procs, "--ws-trust-proxy", "192.0.2.1", "--max-per-address", "1")
    a = WsPeer(wsport, headers=[("X-Forwarded-For", "203.0.113.7")])
    assert a.recv() == "Welcome to the server!"
    wait_for_log(server, rb"client 127\.0\.0\.1:\d+ connected \(1 clients\)")
    # Claiming to be someone else does not buy a second slot.
    b = WsPeer(wsport, headers=[("X-Forwarded-For", "203.0.113.8")])
    assert b.expect_close() == 1008


def test_a_trusted_proxy_must_be_an_ip_address():
    out = subprocess.run([BIN, "serve", "--ws", "127.0.0.1:0", "--ws-trust-proxy", "proxy.example"],
                         capture_output=True, timeout=DEADLINE)
    assert out.returncode != 0
    assert b"not an IP address: 'proxy.example'" in out.stderr


def test_a_policy_close_says_why_in_its_reason(procs):
    server, port, wsport = serve_ws(procs, "--publish", "--welcome", "", "--max-rate", "2")
    ws = WsPeer(wsport)
    for i in range(20):
        ws.send(f"m{i}")
    code, reason = ws.expect_close_reason()
    assert code == 1008
    assert reason.startswith("flood: more than 2 messages"), reason


def test_a_frame_sent_right_behind_the_upgrade_request_is_not_lost(procs):
    """A client may pipeline its first frame with the request, before it has read the 101."""
    server, port, wsport = serve_ws(procs, "--publish", "--welcome", "")
    tcp = connect(port)
    reader = FrameReader(tcp)
    wait_for_client(server, tcp)
    request = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{wsport}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", wsport), timeout=DEADLINE)
    s.sendall(request + raw_frame(0x1, b"early bird") + raw_frame(0x2, b"\x00second"))
    assert reader.read() == b"early bird"
    assert reader.read() == b"\x00second"
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "the server closed the connection"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 ")
    s.close()
