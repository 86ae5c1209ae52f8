"""The command line tells the truth (issue 15): exit codes, errors with reasons, real TOML, the
welcome only for the time stream, --wait-for, send --input/--file/--rate, serve --print."""
import json
import os
import re
import socket
import subprocess

import pytest

from framecast_test import BIN, DEADLINE, FrameReader, connect, frame, free_port


def run(*args, **kw):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, timeout=DEADLINE, **kw)


# --- send never exits 0 when the server did not take everything -----------------------------

@pytest.mark.parametrize("serve_args, send_args, data, why", [
    (["--publish", "--max-rate", "100"], [], b"".join(b"%d\n" % i for i in range(2000)),
     rb"disconnected: flood"),
    (["--publish", "--max-message", "1KiB"], [], b"x" * 2000 + b"\n", rb"disconnected: bad input"),
    (["--publish"], ["--header-size", "5"], b"hello\n", rb"disconnected: bad input"),
])
def test_send_fails_when_the_server_closes_first(procs, serve_args, send_args, data, why):
    server, port = procs.serve(*serve_args)
    r = run("send", f"127.0.0.1:{port}", *send_args, input=data)
    assert r.returncode == 1, r.stderr
    assert b"closed the connection" in r.stderr and b"did not take everything" in r.stderr
    server.wait_for(why)


def test_send_to_a_plain_streaming_server_fails(procs):
    server, port = procs.serve()
    r = run("send", f"127.0.0.1:{port}", "hello")
    assert r.returncode == 1
    assert b"streaming server, which discards what clients send" in r.stderr


def test_send_to_a_publish_server_succeeds_and_subscribers_get_everything(procs):
    server, port = procs.serve("--publish")
    sub = connect(port)
    server.wait_for(rb"\(1 clients\)")
    r = run("send", f"127.0.0.1:{port}", "a", "b")
    assert r.returncode == 0, r.stderr
    reader = FrameReader(sub)
    assert [reader.read(), reader.read()] == [b"a", b"b"]  # no welcome first


def test_client_refuses_a_message_over_its_max_message_locally(procs):
    server, port = procs.serve("--publish")
    r = run("send", f"127.0.0.1:{port}", input=b"x" * (1024 * 1024 + 1) + b"\n")
    assert r.returncode == 5 and b"longer than the largest message (1048576 bytes)" in r.stderr, r.stderr
    r = run("send", f"127.0.0.1:{port}", "--max-message", "4", "12345")
    assert r.returncode == 5 and b"message 1" in r.stderr


def test_chat_client_refuses_a_line_over_the_server_limit(procs):
    server, port = procs.serve("--chat", "--max-message", "100")
    r = run("chat", f"127.0.0.1:{port}", "--name", "al", "--max-message", "100",
            input=b"y" * 150 + b"\nshort\n")
    assert b"not sent" in r.stderr and r.returncode == 0, r.stderr


# --- numbers, sizes, commands ---------------------------------------------------------------

def test_sizes_are_not_negative_and_numbers_are_numbers():
    r = run("serve", "--max-message", "-5")
    assert r.returncode == 2 and b"a size cannot be negative" in r.stderr
    r = run("serve", "--interval", "abc")
    assert r.returncode == 2 and b"--interval: 'abc' is not a number" in r.stderr


@pytest.mark.parametrize("args, rc, stream, text", [
    ([], 2, "stderr", rb"Commands:\n  serve"),
    (["foo"], 2, "stderr", rb"unknown command 'foo'[\s\S]*  connect"),
    (["help"], 0, "stdout", rb"Commands:[\s\S]*  chat"),
    (["help", "send"], 0, "stdout", rb"Usage: framecast send[\s\S]*--rate"),
    (["help", "nope"], 2, "stderr", rb"unknown command 'nope'"),
])
def test_commands_are_listed(args, rc, stream, text):
    r = run(*args)
    assert r.returncode == rc
    assert re.search(text, getattr(r, stream)), r


# --- the config file is TOML ---------------------------------------------------------------

def test_config_is_real_toml(procs, tmp_path):
    cfg = tmp_path / "f.toml"
    cfg.write_text('[serve]\nlisten = [\n  "127.0.0.1:0",\n]\nidle-timeout = 1_000\n'
                   'source = "stdin"\n')
    p = procs.framecast("--config", cfg, "serve", stdin=subprocess.PIPE)
    p.wait_for(rb"listening on 127\.0\.0\.1:\d+", stream="out")
    p.p.stdin.close()
    assert p.wait() == 0, p.stderr


@pytest.mark.parametrize("text, error", [
    ("[server]\nlisten = ':0'\n", rb"f\.toml:1: unknown table \[server\]; the tables are the "
                                  rb"subcommands: \[serve\], \[connect\]"),
    ("[serve]\n\nwelcom = 'x'\n", rb"f\.toml:3: unknown key 'serve\.welcom'"),
    ("[serve]\nlisten = [\n ':0'\ninterval = 1\n", rb"f\.toml:4:\d+: .*expected comma"),
    ("[serve]\ninterval = 'abc'\n", rb"f\.toml:2: --interval: 'abc' is not a number"),
])
def test_config_errors_name_file_and_line(tmp_path, text, error):
    cfg = tmp_path / "f.toml"
    cfg.write_text(text)
    r = run("--config", cfg, "serve")
    assert r.returncode == 2
    assert re.search(error, r.stderr), r.stderr


# --- errors with their reasons ---------------------------------------------------------------

def test_metrics_address_in_use_gives_the_reason_and_exit_8():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    r = run("serve", "--listen", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}")
    assert r.returncode == 8
    assert b"Address already in use" in r.stderr


@pytest.mark.parametrize("target", ["127.0.0.1:{port}", "http://127.0.0.1:{port}/metrics"])
def test_stats_says_the_whole_reason(target):
    port = free_port()
    r = run("stats", target.format(port=port), "--count", "1")
    assert r.returncode == 3
    assert b"Connection refused" in r.stderr


UTF8_COUNTING_SERVER = """
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
msg = "Welcome \U0001f389 to the server"
c.sendall(bytes(f"{len(msg):<10}", "utf-8") + bytes(msg, "utf-8"))
msg = "\U0001f389" * 3
c.sendall(bytes(f"{len(msg):<10}", "utf-8") + bytes(msg, "utf-8"))
c.recv(1)
"""


def test_a_utf8_payload_counted_in_characters_suggests_code_points(procs):
    peer = procs.python(UTF8_COUNTING_SERVER)
    port = int(peer.wait_for(rb"(\d+)\n", stream="out").group(1))
    r = run("connect", f"127.0.0.1:{port}")
    assert r.returncode == 4
    assert b"--length-unit code-points" in r.stderr
    r = run("connect", f"127.0.0.1:{free_port()}")  # nothing else gets the hint
    assert b"code-points" not in r.stderr


# --- the welcome belongs to the time stream --------------------------------------------------

def test_data_sources_send_no_welcome_unless_asked(procs):
    server, port = procs.serve("--source", "stdin", "--wait-for", "1", stdin=subprocess.PIPE)
    c = procs.framecast("connect", f"127.0.0.1:{port}", "-o", "json")
    server.wait_for(rb"starting the source")
    server.p.stdin.write(b"first\n")
    server.p.stdin.close()
    assert c.wait() == 0
    first = json.loads(c.stdout.splitlines()[0])
    assert first["seq"] == 1 and first["text"] == "first"
    server, port = procs.serve("--publish", "--welcome", "hi")
    assert FrameReader(connect(port)).read() == b"hi"


def test_wait_for_holds_stdin_until_subscribers_are_there(procs):
    server, port = procs.serve("--source", "stdin", "--wait-for", "2",
                               stdin=subprocess.PIPE)
    server.p.stdin.write(b"".join(b"%d\n" % i for i in range(1, 1001)))
    server.p.stdin.close()
    server.wait_for(rb"waiting for 2 clients")
    a = procs.framecast("connect", f"127.0.0.1:{port}", "--count", "10")
    b = procs.framecast("connect", f"127.0.0.1:{port}")
    assert a.wait() == 0 and b.wait() == 0 and server.wait() == 0
    assert a.stdout == b"".join(b"%d\n" % i for i in range(1, 11))
    assert b.stdout.count(b"\n") == 1000


# --- send's inputs and serve --print ---------------------------------------------------------

def print_server(procs, *args):
    p = procs.framecast("serve", "--listen", "127.0.0.1:0", "--print", *args)
    port = int(p.wait_for(rb"listening on 127\.0\.0\.1:(\d+)").group(1))
    return p, port


@pytest.mark.parametrize("fmt, expected", [
    ("lines", b"one\ntw\xc3\xb6\n"),
    ("raw", b"onetw\xc3\xb6"),
    ("framed", frame(b"one") + frame("twö")),
])
def test_serve_print_shows_what_clients_send(procs, fmt, expected):
    server, port = print_server(procs, "-o", fmt)
    assert run("send", f"127.0.0.1:{port}", "one", "twö").returncode == 0
    server.wait_for(rb"disconnected: closed by peer")
    server.signal()
    assert server.wait() == 0
    assert server.stdout == expected


def test_serve_print_json(procs, tmp_path):
    server, port = print_server(procs, "-o", "json")
    (tmp_path / "empty").write_bytes(b"")
    assert run("send", f"127.0.0.1:{port}", "x", "--file", tmp_path / "empty").returncode == 0
    server.wait_for(rb"disconnected: closed by peer")
    server.signal()
    server.wait()
    rows = [json.loads(l) for l in server.stdout.splitlines()]
    assert [(r["seq"], r["text"]) for r in rows] == [(1, "x"), (2, "")]


def test_send_inputs_replay_framed_raw_and_files(procs, tmp_path):
    server, port = print_server(procs, "-o", "json")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xff\nmulti\nline")
    framed = frame("a") + frame("b\nc")
    assert run("send", f"127.0.0.1:{port}", "--input", "framed", input=framed).returncode == 0
    assert run("send", f"127.0.0.1:{port}", "--input", "raw", input=b"x\ny\n").returncode == 0
    assert run("send", f"127.0.0.1:{port}", "--file", blob).returncode == 0
    r = run("send", f"127.0.0.1:{port}", "--input", "framed", input=b"5         abc")
    assert r.returncode == 6 and b"frame" in r.stderr
    server.wait_for(rb"(closed by peer[\s\S]*){4}")
    server.signal()
    server.wait()
    rows = [json.loads(l) for l in server.stdout.splitlines()]
    got = [r.get("text", r.get("base64")) for r in rows]
    assert got == ["a", "b\nc", "x\ny\n", "AP8KbXVsdGkKbGluZQ=="]


def test_send_rate_spaces_messages(procs):
    server, port = print_server(procs, "-o", "json")
    r = run("send", f"127.0.0.1:{port}", "--rate", "20/s", input=b"1\n2\n3\n4\n5\n")
    assert r.returncode == 0, r.stderr
    server.wait_for(rb"closed by peer")
    server.signal()
    server.wait()
    rows = [json.loads(l) for l in server.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert len({r["time"] for r in rows}) == 5  # one read each: they were spaced, not batched
    assert run("send", "127.0.0.1:1", "--rate", "fast").returncode == 2


# --- chat: mismatches and names -------------------------------------------------------------

def test_chat_against_a_time_server_warns(procs):
    server, port = procs.serve("--interval", "0.05")
    r = run("chat", f"127.0.0.1:{port}", "--name", "al", "--linger", "0.3", input=b"")
    assert b"does not look like a chat room" in r.stderr, r.stderr


def test_piped_chat_says_joined_only_when_the_name_was_accepted(procs):
    server, port = procs.serve("--chat", "--unique-names")
    first = connect(port)
    first.sendall(frame("gina"))
    server.wait_for(rb"gina joined")
    r = run("chat", f"127.0.0.1:{port}", "--name", "gina", input=b"hi\n")
    assert r.returncode == 1
    assert b"joined" not in r.stderr
    assert b"right after the username 'gina'" in r.stderr


def test_chat_marks_the_end_of_the_history(procs):
    server, port = procs.serve("--chat", "--history", "5")
    bob = connect(port)
    bob.sendall(frame("bob") + frame("one") + frame("two"))
    server.wait_for(rb"bob joined")
    late = procs.framecast("chat", f"127.0.0.1:{port}", "--name", "late", "--linger", "5",
                           stdin=subprocess.PIPE)
    late.wait_for(rb"--- 2 earlier messages \(history\)")  # stderr: stdout stays pairs only
    bob.sendall(frame("three"))
    late.wait_for(rb"bob > three\n", stream="out")
    late.p.stdin.close()
    assert late.wait() == 0
    assert late.stdout.splitlines() == [b"bob > one", b"bob > two", b"bob > three"]


def test_chat_on_a_terminal_marks_the_history_among_the_messages(procs):
    from test_chat import Terminal
    server, port = procs.serve("--chat", "--history", "5")
    bob = connect(port)
    bob.sendall(frame("bob") + frame("one"))
    server.wait_for(rb"bob joined")
    term = Terminal([BIN, "chat", f"127.0.0.1:{port}", "--name", "late"])
    try:
        term.wait_screen(lambda s: "--- 1 earlier message (history); new messages follow ---" in s.rows)
        assert term.screen.rows.index("bob > one") < term.screen.rows.index(
            "--- 1 earlier message (history); new messages follow ---")
    finally:
        term.close()


def test_short_flags_mean_one_thing():
    r = run("chat", "127.0.0.1:1", "-n", "al")
    assert r.returncode == 2  # -n is --count (connect); chat's name is --name only
    assert b"--count" in run("connect", "--help").stdout
