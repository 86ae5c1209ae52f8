"""What a person sees on a terminal (issue 15), in a real pseudo-terminal: plain lines without
timestamps, one `listening on`, a chat client that says why the server closed it (exit 1),
and a long typed line redrawn whole."""
import fcntl
import os
import shlex
import subprocess
import re
import struct
import termios

from framecast_test import BIN, connect, frame, free_port
from test_chat import Terminal


def sized(term, cols=80, rows=24):
    fcntl.ioctl(term.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return term


def finish(term, timeout=10):
    rc = term.p.wait(timeout=timeout)
    term.pump()
    return rc


def test_chat_on_a_terminal_reports_a_refused_name(procs):
    server, port = procs.serve("--chat", "--unique-names")
    first = connect(port)
    first.sendall(frame("alice"))
    server.wait_for(rb"alice joined")
    term = Terminal([BIN, "chat", f"127.0.0.1:{port}", "--name", "alice"])
    try:
        assert finish(term) == 1
        assert b"right after the username 'alice'" in term.raw, term.raw
    finally:
        term.close()


def test_chat_on_a_terminal_reports_the_server_stopping(procs):
    server, port = procs.serve("--chat")
    term = Terminal([BIN, "chat", f"127.0.0.1:{port}", "--name", "alice"])
    try:
        term.wait_screen(lambda s: s.rows[s.row] == "alice > ")
        server.wait_for(rb"alice joined")
        server.signal()
        assert finish(term) == 1
        assert b"connection closed by the server" in term.raw, term.raw
    finally:
        term.close()


def test_serve_on_a_terminal_says_listening_once_in_plain_words(procs):
    term = Terminal([BIN, "serve", "--listen", "127.0.0.1:0"])
    try:
        term.wait_screen(lambda s: any("listening on" in r for r in s.rows))
        term.pump(0.3)
        text = term.raw.decode()
        assert len(re.findall(r"listening on 127\.0\.0\.1:\d+", text)) == 1, text
        assert not re.search(r"\d{4}-\d\d-\d\dT", text), text  # no timestamps for a person
    finally:
        term.close()


def test_connect_on_a_terminal_prints_one_plain_error_line():
    port = free_port()
    term = Terminal([BIN, "connect", f"127.0.0.1:{port}"])
    try:
        assert finish(term) == 3
        assert term.raw.decode().strip().endswith(
            f"error: cannot connect to 127.0.0.1:{port}: Connection refused\x1b[m") or \
            f"error: \x1b[mcannot connect to 127.0.0.1:{port}: Connection refused" in term.raw.decode(), term.raw
        assert not re.search(rb"\d{4}-\d\d-\d\dT", term.raw)
    finally:
        term.close()


def test_a_long_typed_line_is_redrawn_over_all_its_rows(procs):
    server, port = procs.serve("--chat")
    bob = connect(port)
    bob.sendall(frame("bob"))
    server.wait_for(rb"bob joined")
    term = sized(Terminal([BIN, "chat", f"127.0.0.1:{port}", "--name", "alice", "-v"]), cols=80)
    try:
        # Joined for the client too (its name accepted, the history moment over): "hi" is live.
        term.wait_screen(lambda s: b"joined 127.0.0.1" in term.raw)
        typed = "x" * 300  # with "alice > ", 308 columns: 4 rows, the cursor on the 4th
        term.type(typed)
        term.wait_screen(lambda s: term.raw.count(b"x") >= 300)
        mark = len(term.raw)
        bob.sendall(frame("hi"))
        term.wait_screen(lambda s: b"bob > hi\r\nalice > " + typed.encode() in term.raw)
        # Up three rows to the prompt's first, clear to the end of the screen, then the
        # message and the whole typed line again.
        assert b"\r\x1b[3A\x1b[Jbob > hi\r\nalice > " + typed.encode() in term.raw[mark:], term.raw[mark:]
    finally:
        term.close()


# --- shell completion ---------------------------------------------------------------------

COMPLETION = os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "completion",
                          "framecast.bash")


def complete(*words):
    """What bash offers after `framecast WORDS...` (the last word being completed)."""
    script = (f"source {COMPLETION}; COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
              f"COMP_CWORD={len(words) - 1}; _framecast; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    r = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().split()


def test_bash_completion_offers_commands_and_each_commands_options():
    assert {"serve", "connect", "send", "chat", "stats", "help"} <= set(complete(BIN, ""))
    assert sorted(complete(BIN, "se")) == ["send", "serve"]
    assert "--wait-for" in complete(BIN, "serve", "--wa")
    assert complete(BIN, "send", "--ra") == ["--rate"]
    assert complete(BIN, "connect", "-o", "js") == ["json"]
