"""The chat room (issue 5): `framecast serve --chat` and `framecast chat`, against each other and
against Python peers written to the tutorial series' chat protocol: a client's first frame is its
username; the server relays each later frame to every other client as the sender's username
frame then the message frame, both exactly as received."""
import os
import pty
import re
import select
import socket
import subprocess
import time

import pytest

from framecast_test import BIN, DEADLINE, FrameReader, connect, frame, wait_for_client

# --- Python peers of the tutorial series' chat room (correct readers, same wire behaviour) ---

PY_CHAT_SERVER = r'''
import select, socket

HEADER_LENGTH = 10

server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server_socket.bind(("127.0.0.1", 0))
server_socket.listen()
print("port", server_socket.getsockname()[1], flush=True)

sockets_list = [server_socket]
clients = {}

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data

def receive_message(client_socket):
    try:
        message_header = recv_exact(client_socket, HEADER_LENGTH)
        if not message_header:
            return False
        message_length = int(message_header.decode("utf-8").strip())
        data = recv_exact(client_socket, message_length) if message_length else b""
        if data is None:
            return False
        return {"header": message_header, "data": data}
    except Exception:
        return False

while True:
    read_sockets, _, exception_sockets = select.select(sockets_list, [], sockets_list)
    for notified_socket in read_sockets:
        if notified_socket == server_socket:
            client_socket, client_address = server_socket.accept()
            user = receive_message(client_socket)
            if user is False:
                continue
            sockets_list.append(client_socket)
            clients[client_socket] = user
            print("Accepted new connection from {}:{}, username: {}".format(
                *client_address, user["data"].decode("utf-8")), flush=True)
        else:
            message = receive_message(notified_socket)
            if message is False:
                print("Closed connection from: {}".format(
                    clients[notified_socket]["data"].decode("utf-8")), flush=True)
                sockets_list.remove(notified_socket)
                del clients[notified_socket]
                continue
            user = clients[notified_socket]
            print(f'Received message from {user["data"].decode("utf-8")}: '
                  f'{message["data"].decode("utf-8")}', flush=True)
            for client_socket in clients:
                if client_socket != notified_socket:
                    client_socket.sendall(user["header"] + user["data"] +
                                          message["header"] + message["data"])
    for notified_socket in exception_sockets:
        sockets_list.remove(notified_socket)
        del clients[notified_socket]
'''

# argv: port, username. Sends each stdin line as a message; prints "name > message" per pair.
PY_CHAT_CLIENT = r'''
import socket, sys, threading

HEADER_LENGTH = 10
port, my_username = int(sys.argv[1]), sys.argv[2]

client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client_socket.connect(("127.0.0.1", port))
username = my_username.encode("utf-8")
client_socket.sendall(f"{len(username):<{HEADER_LENGTH}}".encode("utf-8") + username)

def send_lines():
    for line in sys.stdin:
        message = line.rstrip("\n").encode("utf-8")
        if message:
            client_socket.sendall(f"{len(message):<{HEADER_LENGTH}}".encode("utf-8") + message)
threading.Thread(target=send_lines, daemon=True).start()

def recv_exact(n):
    data = b""
    while len(data) < n:
        chunk = client_socket.recv(n - len(data))
        if not chunk:
            print("Connection closed by the server", flush=True)
            sys.exit()
        data += chunk
    return data

while True:
    username_header = recv_exact(HEADER_LENGTH)
    username = recv_exact(int(username_header.decode("utf-8").strip())).decode("utf-8")
    message_header = recv_exact(HEADER_LENGTH)
    message = recv_exact(int(message_header.decode("utf-8").strip())).decode("utf-8")
    print(f"{username} > {message}", flush=True)
'''


def chat_server(procs, *args):
    return procs.serve("--chat", *args)


def join(port, name, header=None):
    """A raw chat client: connects and sends its username frame (or `header` + name)."""
    s = connect(port)
    name = name.encode() if isinstance(name, str) else name
    s.sendall((header + name) if header is not None else frame(name))
    return s


def read_pair(reader, timeout=DEADLINE):
    return reader.read(timeout), reader.read(timeout)


def assert_closed(sock, timeout=DEADLINE):
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    assert data == b"", f"expected the server to close, got {data!r}"


def assert_silent(sock, seconds=0.3):
    sock.settimeout(seconds)
    with pytest.raises(socket.timeout):
        data = sock.recv(1)
        raise AssertionError(f"unexpected data {data!r}")


def framecast_chat(procs, port, name, *args):
    return procs.framecast("chat", f"127.0.0.1:{port}", "--name", name, *args,
                           stdin=subprocess.PIPE)


def say(proc, *lines):
    proc.p.stdin.write("".join(line + "\n" for line in lines).encode())
    proc.p.stdin.flush()


# --- the server ----------------------------------------------------------------------------

def test_relay_is_the_senders_frames_byte_for_byte_to_every_other_client(procs):
    server, port = chat_server(procs)
    # A right-aligned header is valid framing; the tutorial server resends the header it got.
    alice = join(port, "alice", header=b"         5")
    server.wait_for(rb"alice joined from 127\.0\.0\.1:\d+")
    bob = join(port, "bob")
    server.wait_for(rb"bob joined from 127\.0\.0\.1:\d+")
    lurker = connect(port)  # connected, no username yet: not in the room
    wait_for_client(server, lurker)  # admitted, so a relay would reach it if it were in the room
    alice.sendall(b"    2     hi" + frame("second"))
    bob.settimeout(DEADLINE)
    want = b"         5alice" + b"    2     hi" + b"         5alice" + frame("second")
    got = b""
    while len(got) < len(want):
        got += bob.recv(4096)
    assert got == want
    assert_silent(alice)  # the sender gets nothing back
    assert_silent(lurker)
    bob.sendall(frame("hello"))
    assert read_pair(FrameReader(alice)) == (b"bob", b"hello")


def test_no_welcome_and_no_time_stream_in_chat_mode(procs):
    server, port = chat_server(procs, "--interval", "0.05")
    s = join(port, "alice")
    server.wait_for(rb"alice joined")
    assert_silent(s, 0.4)


@pytest.mark.parametrize("args, message", [
    (["--welcome", "hi"], rb"--chat sends no welcome"),
    (["--source", "time"], rb"--chat streams no --source 'time'"),
    (["--publish"], rb"--publish excludes --chat"),
])
def test_chat_mode_refuses_what_would_corrupt_the_pairs(args, message):
    r = subprocess.run([BIN, "serve", "--chat", "--listen", "127.0.0.1:0", *args],
                       capture_output=True, timeout=10)
    assert r.returncode == 2
    assert re.search(message, r.stderr), r.stderr


def test_chat_options_need_chat():
    for args in (["--history", "3"], ["--unique-names"], ["--max-name", "8"]):
        r = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", *args],
                           capture_output=True, timeout=10)
        assert r.returncode == 2 and b"requires --chat" in r.stderr, (args, r.stderr)


@pytest.mark.parametrize("kind, name, log", [
    ("empty", b"", rb"bad username: empty"),
    ("invalid-utf8", b"al\xffce", rb"bad username: not valid UTF-8: b'al\\xffce'"),
    ("too-long", b"x" * 9, rb"bad username: frame header b'9         ' announces 9 bytes, "
                           rb"above the maximum of 8 \(max name\)"),
    ("duplicate", b"alice", rb"username 'alice' is already in use \(unique names\)"),
])
def test_bad_username_closes_only_that_client(procs, kind, name, log):
    server, port = chat_server(procs, "--max-name", "8", "--unique-names")
    alice = join(port, "alice")
    bob = join(port, "bob")
    server.wait_for(rb"bob joined")
    bad = join(port, name)
    m = server.wait_for(rb"client 127\.0\.0\.1:\d+ disconnected: " + log)
    assert m
    assert_closed(bad)
    alice.sendall(frame("still here"))
    assert read_pair(FrameReader(bob)) == (b"alice", b"still here")


def test_a_client_that_never_sends_its_username_is_closed_after_the_idle_timeout(procs):
    server, port = chat_server(procs, "--idle-timeout", "0.5")
    alice = join(port, "alice")
    server.wait_for(rb"alice joined")
    silent = connect(port)
    silent_name = "127.0.0.1:%d" % silent.getsockname()[1]
    half = connect(port)
    half.sendall(b"5         al")  # a username that never ends
    half_name = "127.0.0.1:%d" % half.getsockname()[1]
    server.wait_for(rb"client %s disconnected: join timeout: no username within 500 ms "
                    rb"\(idle timeout\)" % silent_name.encode())
    server.wait_for(rb"client %s disconnected: idle timeout: stuck in the middle of a frame"
                    % half_name.encode())
    assert_closed(silent)
    assert_closed(half)
    # A client that joined and then stays quiet between frames is never timed out. (Not a
    # synchronisation sleep: staying quiet for twice --idle-timeout is what is tested.)
    time.sleep(1.0)
    bob = join(port, "bob")
    server.wait_for(rb"bob joined")
    alice.sendall(frame("still here"))
    assert read_pair(FrameReader(bob)) == (b"alice", b"still here")
    assert not re.search(rb"alice left", server.stderr)


def test_a_name_is_free_again_once_its_owner_left(procs):
    server, port = chat_server(procs, "--unique-names")
    first = join(port, "alice")
    server.wait_for(rb"alice joined")
    first.close()
    server.wait_for(rb"alice left \(127\.0\.0\.1:\d+\): closed by peer")
    join(port, "alice")
    server.wait_for(rb"(?s)alice left.*alice joined")


def test_history_replays_the_last_messages_to_a_late_joiner(procs):
    server, port = chat_server(procs, "--history", "3")
    alice, witness = join(port, "alice"), join(port, "witness")
    server.wait_for(rb"witness joined")
    alice.sendall(b"".join(frame(f"m{i}") for i in range(5)))
    w = FrameReader(witness)
    assert [read_pair(w)[1] for _ in range(5)] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    late = join(port, "late")
    server.wait_for(rb"late joined")
    r = FrameReader(late)
    assert [read_pair(r) for _ in range(3)] == [(b"alice", b"m2"), (b"alice", b"m3"),
                                                (b"alice", b"m4")]
    alice.sendall(frame("live"))
    assert read_pair(r) == (b"alice", b"live")
    assert_silent(late)


def test_client_leaving_mid_message_does_not_disturb_others(procs):
    server, port = chat_server(procs)
    alice, bob, carol = join(port, "alice"), join(port, "bob"), join(port, "carol")
    server.wait_for(rb"carol joined")
    alice.sendall(frame("before"))
    rb_, rc_ = FrameReader(bob), FrameReader(carol)
    assert read_pair(rb_) == (b"alice", b"before")
    assert read_pair(rc_) == (b"alice", b"before")
    alice.sendall(b"20        only half")
    alice.close()
    server.wait_for(rb"alice left \(127\.0\.0\.1:\d+\): bad input: connection closed after 9 "
                    rb"of 20 payload bytes")
    bob.sendall(frame("after"))
    assert read_pair(rc_) == (b"bob", b"after")
    carol.sendall(frame("ok"))
    assert read_pair(rb_) == (b"carol", b"ok")
    assert_silent(bob)


def test_python_tutorial_clients_chat_through_framecast_serve(procs):
    server, port = chat_server(procs)
    alice = procs.python(PY_CHAT_CLIENT, str(port), "alice", stdin=subprocess.PIPE)
    bob = procs.python(PY_CHAT_CLIENT, str(port), "bob", stdin=subprocess.PIPE)
    server.wait_for(rb"(?s)(alice|bob) joined.*(alice|bob) joined")
    say(alice, "hello bob")
    bob.wait_for(rb"alice > hello bob\n", stream="out")
    say(bob, "hi alice", "how are you")
    alice.wait_for(rb"bob > hi alice\nbob > how are you\n", stream="out")


# --- the client ----------------------------------------------------------------------------

def test_three_framecast_chat_clients_see_each_other_in_order(procs):
    server, port = chat_server(procs)
    names = ["alice", "bob", "carol"]
    clients = {n: framecast_chat(procs, port, n) for n in names}
    for n in names:
        server.wait_for(rb"%s joined from 127\.0\.0\.1:\d+" % n.encode())
    for n, c in clients.items():
        say(c, *[f"{n} says {i}" for i in range(5)])
    for n, c in clients.items():
        for other in names:
            if other == n:
                continue
            expected = b"".join(b"%s > %s says %d\n" % (other.encode(), other.encode(), i)
                                for i in range(5))
            c.wait_for(b"(?s)" + b".*".join(re.escape(line + b"\n")
                                             for line in expected.splitlines()), stream="out")
    for n, c in clients.items():
        c.p.stdin.close()
        assert c.wait() == 0, c.stderr
        lines = c.stdout.decode().splitlines()
        assert len(lines) == 10
        assert not any(line.startswith(f"{n} > ") for line in lines)  # nothing of its own
        for other in names:
            mine = [line for line in lines if line.startswith(f"{other} > ")]
            assert mine == ([] if other == n else [f"{other} > {other} says {i}" for i in range(5)])


def test_python_tutorial_client_and_framecast_chat_through_framecast_serve(procs):
    server, port = chat_server(procs)
    py = procs.python(PY_CHAT_CLIENT, str(port), "pyuser", stdin=subprocess.PIPE)
    fc = framecast_chat(procs, port, "fcuser")
    server.wait_for(rb"(?s)(pyuser|fcuser) joined.*(pyuser|fcuser) joined")
    say(fc, "hello from C++", "caf\u00e9 \u2615")
    py.wait_for(re.escape("fcuser > hello from C++\nfcuser > caf\u00e9 \u2615\n".encode()),
                stream="out")
    say(py, "hello from Python")
    fc.wait_for(rb"pyuser > hello from Python\n", stream="out")
    fc.p.stdin.close()
    assert fc.wait() == 0


def test_framecast_chat_against_the_tutorial_python_chat_server(procs):
    server = procs.python(PY_CHAT_SERVER)
    port = int(server.wait_for(rb"port (\d+)", stream="out").group(1))
    fc = framecast_chat(procs, port, "fcuser", "--linger", "0.3")
    server.wait_for(rb"Accepted new connection from 127\.0\.0\.1:\d+, username: fcuser\n",
                    stream="out")
    raw = join(port, "raw")
    server.wait_for(rb"username: raw\n", stream="out")
    raw.sendall(frame("hi there"))
    fc.wait_for(rb"raw > hi there\n", stream="out")
    say(fc, "hello python")
    r = FrameReader(raw)
    assert read_pair(r) == (b"fcuser", b"hello python")
    fc.p.stdin.close()
    assert fc.wait() == 0
    server.wait_for(rb"Closed connection from: fcuser\n", stream="out")


def test_framecast_chat_exits_at_end_of_input_after_the_linger(procs):
    server, port = chat_server(procs)
    listener = join(port, "listener")
    server.wait_for(rb"listener joined")
    start = time.monotonic()
    fc = procs.framecast("chat", f"127.0.0.1:{port}", "--name", "once", "--linger", "0.5",
                         stdin=subprocess.PIPE)
    fc.p.stdin.write(b"one\n\ntwo\r\n/quit\nnever sent\n")
    fc.p.stdin.close()
    assert fc.wait() == 0, fc.stderr
    assert 0.5 <= time.monotonic() - start < 5
    r = FrameReader(listener)
    assert [read_pair(r) for _ in range(2)] == [(b"once", b"one"), (b"once", b"two")]
    server.wait_for(rb"once left \(127\.0\.0\.1:\d+\): closed by peer")
    assert_silent(listener)


@pytest.mark.parametrize("name, error", [
    ("", rb"--name must not be empty"),
    ("x" * 65, rb"--name is 65 bytes, more than --max-name 64"),
])
def test_framecast_chat_checks_the_name_before_connecting(name, error):
    r = subprocess.run([BIN, "chat", "127.0.0.1:9", "--name", name], capture_output=True,
                       timeout=10)
    assert r.returncode == 2 and re.search(error, r.stderr), r.stderr


def test_framecast_chat_refuses_invalid_utf8_name():
    r = subprocess.run([BIN.encode(), b"chat", b"127.0.0.1:9", b"--name", b"al\xffce"],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"--name is not valid UTF-8" in r.stderr, r.stderr


def test_framecast_chat_reports_a_server_that_closes_it(procs):
    server, port = chat_server(procs, "--unique-names")
    first = join(port, "alice")
    server.wait_for(rb"alice joined")
    second = framecast_chat(procs, port, "alice")
    assert second.wait() == 1
    assert b"connection closed by the server" in second.stderr


# --- the interactive client, in a real terminal ---------------------------------------------

class Screen:
    """Just enough of a terminal to read what the user would see: \\r, \\n, \\b, ESC [ K."""

    def __init__(self):
        self.rows, self.row, self.col = [""], 0, 0

    def feed(self, text):
        i = 0
        while i < len(text):
            ch = text[i]
            if text.startswith("\x1b[K", i):
                self.rows[self.row] = self.rows[self.row][: self.col]
                i += 3
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                if self.row == len(self.rows):
                    self.rows.append("")
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            else:
                line = self.rows[self.row].ljust(self.col)
                self.rows[self.row] = line[: self.col] + ch + line[self.col + 1:]
                self.col += 1
            i += 1

    def text(self):
        return "\n".join(self.rows)


class Terminal:
    def __init__(self, args):
        self.master, slave = pty.openpty()
        self.p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                  start_new_session=True)
        os.close(slave)
        self.raw, self.screen = b"", Screen()

    def pump(self, timeout=0.05):
        while True:
            ready, _, _ = select.select([self.master], [], [], timeout)
            if not ready:
                return
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.raw += data
            self.screen.feed(data.decode(errors="replace"))

    def wait_screen(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if predicate(self.screen):
                return
        raise AssertionError(f"screen never matched:\n{self.screen.text()}\nraw: {self.raw!r}")

    def type(self, text):
        os.write(self.master, text.encode() if isinstance(text, str) else text)

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=5)
        os.close(self.master)


def bob_then_alice_on_a_terminal(procs, server_args=(), alice_args=()):
    """A chat server, raw client bob in it, then alice's `framecast chat` on a terminal once
    both are in the room: (server, bob's socket, alice's Terminal; close() it when done)."""
    server, port = chat_server(procs, *server_args)
    bob = join(port, "bob")
    server.wait_for(rb"bob joined")
    term = Terminal([BIN, "chat", f"127.0.0.1:{port}", "--name", "alice", *alice_args])
    try:
        term.wait_screen(lambda s: s.rows[s.row] == "alice > ")
        server.wait_for(rb"alice joined")
    except BaseException:
        term.close()
        raise
    return server, bob, term


def test_interactive_client_keeps_the_typed_line_whole_when_a_message_arrives(procs):
    server, bob, term = bob_then_alice_on_a_terminal(procs)
    try:
        term.type("hel")
        term.wait_screen(lambda s: s.rows[s.row] == "alice > hel")
        bob.sendall(frame("hi"))
        term.wait_screen(lambda s: "bob > hi" in s.rows)
        assert b"\r\x1b[Kbob > hi\r\nalice > hel" in term.raw
        assert term.screen.rows[term.screen.row] == "alice > hel"  # the typed line, redrawn
        term.type("lx\x7fo\r")  # a backspace, then Enter
        assert read_pair(FrameReader(bob)) == (b"alice", b"hello")
        term.wait_screen(lambda s: s.rows[-2:] == ["alice > hello", "alice > "])
        bob.sendall(frame("\x1b[2Jgotcha"))  # control characters are shown, not obeyed
        term.wait_screen(lambda s: "bob > \\x1b[2Jgotcha" in s.rows)
        term.type("\x04")  # Ctrl-D on an empty line leaves
        assert term.p.wait(timeout=10) == 0
        server.wait_for(rb"alice left \(127\.0\.0\.1:\d+\): closed by peer")
    finally:
        term.close()


def test_interactive_client_counts_no_live_message_as_history_once_typing_began(procs):
    # A message that arrives after the first key is live, even within the 250 ms after joining
    # that otherwise count as the --history replay: no "earlier message" marker for it.
    _, bob, term = bob_then_alice_on_a_terminal(procs, ("--history", "5"), ("-v",))
    try:
        term.type("h")
        term.wait_screen(lambda s: s.rows[s.row] == "alice > h")
        bob.sendall(frame("hi"))
        term.wait_screen(lambda s: "bob > hi" in s.rows)
        # The join timer has fired once its log line is on the screen (-v).
        term.wait_screen(lambda s: any("joined 127.0.0.1" in r for r in s.rows))
        assert not any("earlier message" in r for r in term.screen.rows), term.screen.text()
    finally:
        term.close()


def test_interactive_client_leaves_with_quit(procs):
    server, port = chat_server(procs)
    term = Terminal([BIN, "chat", f"127.0.0.1:{port}", "--name", "alice"])
    try:
        term.wait_screen(lambda s: s.rows[s.row] == "alice > ")
        term.type("/quit\r")
        assert term.p.wait(timeout=10) == 0
        server.wait_for(rb"alice left")
    finally:
        term.close()
