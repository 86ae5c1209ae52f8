"""Resume (docs/resume.md): `serve --resume` and `connect --resume` over real sockets on
loopback. A plain client sees the same bytes as without it; a resuming client gets the backlog
in pieces and then the live stream, nothing missed or repeated across reconnections cut by a
fault-injecting proxy; losses (outside the window, a new epoch) are reported."""
import json
import socket
import subprocess

import pytest

from fault_proxy import FaultProxy
from ws_peer import ws_url
from framecast_test import (BIN, FrameReader, connect, frame, metrics, metrics_url,
                            small_rcvbuf_socket,
                            wait_for_log, wait_until)
from resume_wire import read_pieces_counted, resume_request


def publisher(port):
    s = connect(port)
    return s


def publish(sock, payloads):
    sock.sendall(b"".join(frame(p) for p in payloads))


def publish_units(pub, url, payloads, per_unit):
    """Publishes `per_unit` messages at a time, each batch seen by the server before the next
    (the history keeps whole units, so the window's edge falls where the test expects)."""
    want = metrics(url)["framecast_resume_next_offset"]
    for i in range(0, len(payloads), per_unit):
        publish(pub, payloads[i:i + per_unit])
        want += len(payloads[i:i + per_unit])
        wait_until(lambda: metrics(url)["framecast_resume_next_offset"] == want,
                   f"offset {want}")


def json_lines(proc):
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line]


def test_plain_clients_see_the_same_bytes(procs):
    server, port = procs.serve("--publish", "--resume")
    plain = connect(port)
    wait_for_log(server, rb"\(1 clients\)")
    pub = publisher(port)
    wait_for_log(server, rb"\(2 clients\)")
    payloads = [f"m{i}" for i in range(200)] + ["@resume lookalike, not first"]
    publish(pub, payloads)
    want = b"".join(frame(p) for p in payloads)
    got = b""
    plain.settimeout(20)
    while len(got) < len(want):
        chunk = plain.recv(65536)
        assert chunk, "connection closed"
        got += chunk
    assert got == want  # byte for byte: no position frames, no answer


def test_protocol_answers_and_backlog_in_pieces(procs):
    server, port = procs.serve("--publish", "--resume", "--resume-window", "100000",
                               "--metrics", "127.0.0.1:0")
    url = metrics_url(server)
    pub = publisher(port)
    n = 30_000
    publish(pub, [f"message {i:05}" for i in range(1, n + 1)])
    wait_until(lambda: metrics(url)["framecast_resume_next_offset"] == n + 1, "all published")

    s, r, answer = resume_request(port, "n1")
    assert answer[:2] == ["@resumed", "n1"] and answer[3:] == [str(n + 1), "new"]
    epoch = answer[2]
    publish(pub, ["live 1"])
    assert read_pieces_counted(r, 1)[0] == [(n + 1, b"live 1")]
    s.close()

    # From offset 100 on: the backlog in bounded pieces, then live, no gap, no repeat.
    s, r, answer = resume_request(port, f"n2 {epoch} 99")
    assert answer[3:] == ["100", "ok"]
    got, pieces = read_pieces_counted(r, n + 1 - 99)
    assert [o for o, _ in got] == list(range(100, n + 2))
    assert got[0][1] == b"message 00100" and got[-1][1] == b"live 1"
    assert pieces > 4  # ~450 KB of backlog never travels as one unit
    publish(pub, ["live 2"])
    assert read_pieces_counted(r, 1)[0] == [(n + 2, b"live 2")]
    m = metrics(url)
    assert m["framecast_resume_replayed_total"] >= n - 98
    assert m["framecast_resume_clients"] == 1

    # A position from another epoch: told so, and given all that is held.
    _, r3, answer = resume_request(port, "n3 0123456789abcdef 5")
    assert answer[3:] == ["1", "epoch"]
    # Ahead of the stream, or malformed: refused in one frame, then closed.
    _, _, answer = resume_request(port, f"n4 {epoch} {n + 50}")
    assert answer[0] == "@resume-error" and "ahead of the stream" in " ".join(answer)
    _, r5, answer = resume_request(port, "bad!nonce")
    assert answer[0] == "@resume-error"
    try:
        extra = r5.read(timeout=5)
    except EOFError:
        extra = None
    assert extra is None
    wait_until(lambda: metrics(url)["framecast_resume_refused_total"] == 2, "refusals counted")
    st = procs.framecast("stats", url, "--count", "1")
    assert st.wait() == 0
    assert b"resume      offset 30002  history 30002 msgs" in st.stdout


def test_outside_the_window_is_a_reported_gap(procs):
    server, port = procs.serve("--publish", "--resume", "--resume-window", "10",
                               "--metrics", "127.0.0.1:0")
    pub = publisher(port)
    publish_units(pub, metrics_url(server), [f"a{i}" for i in range(1, 31)], 10)
    s, r, answer = resume_request(port, "x")
    epoch = answer[2]
    s.close()
    _, r, answer = resume_request(port, f"y {epoch} 3")
    assert answer[3:] == ["21", "gap", "17"]  # 4..20 are gone; 21..30 are held
    got, _ = read_pieces_counted(r, 10)
    assert [o for o, _ in got] == list(range(21, 31))


def run_connect(procs, port, *args):
    return procs.framecast("connect", f"127.0.0.1:{port}", "--resume", *args)


def test_connect_offset_file_gap_and_epoch(procs, tmp_path):
    pos = tmp_path / "pos.txt"
    server, port = procs.serve("--publish", "--resume", "--resume-window", "10",
                               "--metrics", "127.0.0.1:0")
    url = metrics_url(server)
    pub = publisher(port)
    # First run: no position yet, live from now; stops after 5 and keeps the position.
    c = run_connect(procs, port, "--offset-file", pos, "-n", "5", "-o", "json")
    wait_for_log(server, rb"resumes at 1 \(new\)")
    publish(pub, [f"b{i}" for i in range(1, 6)])
    assert c.wait() == 0
    assert [(m["offset"], m["text"]) for m in json_lines(c)] == [(i, f"b{i}") for i in range(1, 6)]
    epoch, last = pos.read_text().split()
    assert last == "5"

    # A second run within the window gets what was published meanwhile, and nothing twice.
    publish(pub, [f"b{i}" for i in range(6, 9)])
    c = run_connect(procs, port, "--offset-file", pos, "-n", "3", "-o", "json")
    assert c.wait() == 0
    assert [m["offset"] for m in json_lines(c)] == [6, 7, 8]
    assert pos.read_text().split() == [epoch, "8"]

    # Away longer than the window: an event, a line on stderr, and with --no-gap exit 12.
    publish_units(pub, url, [f"c{i}" for i in range(9, 39)], 10)
    c = run_connect(procs, port, "--offset-file", pos, "-o", "json", "--no-gap")
    assert c.wait() == 12
    assert b"messages lost (offsets 9 to 28): outside the server's window (--no-gap)" in c.stderr
    assert json_lines(c) == [{"event": "gap", "lost": 20, "expected": 9, "next": 29}]
    assert pos.read_text().split() == [epoch, "8"]  # nothing new was output
    c = run_connect(procs, port, "--offset-file", pos, "-o", "json", "-n", "10")
    assert c.wait() == 0
    lines = json_lines(c)
    assert lines[0] == {"event": "gap", "lost": 20, "expected": 9, "next": 29}
    assert [m["offset"] for m in lines[1:]] == list(range(29, 39))
    assert b"20 messages lost" in c.stderr

    # A restarted server has a new epoch: reported, and --no-gap exits 12.
    server.kill()
    server, port = procs.serve("--publish", "--resume")
    c = run_connect(procs, port, "--offset-file", pos, "-o", "json", "--no-gap")
    assert c.wait() == 12
    assert b"the server's history changed" in c.stderr
    event = json_lines(c)[0]
    assert event["event"] == "epoch" and event["old"] == epoch and event["new"] != epoch


def test_reconnecting_clients_through_cuts_miss_nothing(procs):
    """10 resuming clients behind a proxy that cuts every connection (RST, then a clean close,
    alternately) while a publisher sends: each ends with every message exactly once, in order."""
    server, port = procs.serve("--publish", "--resume")
    proxy = FaultProxy(port)
    try:
        n, k = 3000, 10
        clients = [procs.framecast("connect", f"127.0.0.1:{proxy.port}", "--resume",
                                   "--reconnect", "-o", "json", "-n", str(n), "--line-buffered")
                   for _ in range(k)]
        wait_until(lambda: server.stderr.count(b"resumes at 1 (new)") == k, "all resuming")
        pub = publisher(port)
        sent = 0
        for round_ in range(6):
            batch = [f"p{i}" for i in range(sent + 1, sent + 1 + n // 6)]
            publish(pub, batch)
            sent += len(batch)
            if sent == n:
                break  # the last batch: the clients end with it
            # Cut mid-stream once the slowest client got some of this batch.
            target = sent - n // 12
            wait_until(lambda: min(c.stdout.count(b"\n") for c in clients) >= target,
                       f"{target} messages out at every client")
            assert proxy.cut(rst=round_ % 2 == 0) >= 1
            wait_until(lambda: proxy.connections() >= sum(c.p.poll() is None for c in clients),
                       "the clients reconnected")
        for c in clients:
            assert c.wait() == 0, c.stderr[-2000:]
            lines = json_lines(c)
            assert [m["offset"] for m in lines] == list(range(1, n + 1))
            assert [m["text"] for m in lines] == [f"p{i}" for i in range(1, n + 1)]
            assert b"messages lost" not in c.stderr and b"reconnecting" in c.stderr
        assert proxy.accepted >= 5 * k
    finally:
        proxy.close()


def test_usage_errors_and_a_server_without_resume(procs):
    bad = procs.framecast("connect", "127.0.0.1:9", "--resume", "--send")
    assert bad.wait() == 2 and b"--send excludes --resume" in bad.stderr
    bad = procs.framecast("serve", "--resume", "--chat")
    assert bad.wait() == 2
    server, port = procs.serve()  # the tutorial's clock: no --resume
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--resume", "--connect-timeout", "0.5")
    assert c.wait() == 1
    assert b"no answer to the resume request" in c.stderr
    assert c.stdout == b""  # the welcome was not taken for a message


def test_history_moving_past_a_slow_replay_is_a_reported_gap(procs):
    """A client that stops reading mid-replay while the history moves on: the next position
    frame jumps, and the server counts the gap (never a silent one)."""
    server, port = procs.serve("--publish", "--resume", "--resume-window", "20000",
                               "--metrics", "127.0.0.1:0")
    url = metrics_url(server)
    pub = publisher(port)
    body = "x" * 990
    publish_units(pub, url, [f"{i:09} {body}" for i in range(20000)], 5000)
    s, _, answer = resume_request(port, "probe")
    s.close()
    epoch = answer[2]
    slow = small_rcvbuf_socket(port)
    slow.sendall(frame(f"@resume slow {epoch} 0"))
    # It stops reading: the replay stalls with most of the backlog still in the history.
    wait_until(lambda: metrics(url)["framecast_resume_max_lag"] > 10000, "a stalled replay")
    publish_units(pub, url, [f"{i:09} {body}" for i in range(20000, 45000)], 5000)
    r = FrameReader(slow)
    while not r.read().startswith(b"@resumed"):
        pass
    expected, jumps = 1, []
    while expected <= 45000:
        first, count = (int(x) for x in r.read().split(b" "))
        if first != expected:
            jumps.append((expected, first))
        for i in range(count):
            assert int(r.read()[:9]) == first + i - 1
        expected = first + count
    assert len(jumps) == 1 and jumps[0][1] > jumps[0][0]
    assert metrics(url)["framecast_resume_gaps_total"] >= 1
    assert b"left the history before they were replayed" in server.stderr


def test_connect_resume_in_every_output_format_over_tls_and_websocket(procs, tmp_path):
    """`connect --resume` writes -o raw and -o framed too (the offset is kept in --offset-file),
    and resumes through a TLS listener and the WebSocket gateway: each run gets exactly what was
    published while it was away."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "c.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    pos = tmp_path / "pos.txt"
    plain, port = procs.serve("--publish", "--resume", "--ws", "127.0.0.1:0")
    _, ws_port = ws_url(plain)
    pub = publisher(port)

    def run(target, *args):
        c = procs.framecast("connect", target, "--resume", "--offset-file", pos, *args)
        assert c.wait() == 0, c.stderr
        return c.stdout

    c = procs.framecast("connect", f"127.0.0.1:{port}", "--resume", "--offset-file", pos,
                        "-n", "1", "-o", "framed")
    wait_for_log(plain, rb"resumes at 1 \(new\)")
    publish(pub, ["m1"])
    assert c.wait() == 0 and c.stdout == frame("m1")
    publish(pub, ["m2", "", "m4"])
    assert run(f"127.0.0.1:{port}", "-n", "3", "-o", "framed") == frame("m2") + frame("") + frame("m4")
    publish(pub, ["m5", "m6"])
    assert run(f"ws://127.0.0.1:{ws_port}/", "-n", "2", "-o", "raw") == b"m5m6"
    assert pos.read_text().split()[1] == "6"
    publish(pub, ["m7"])
    out = run(f"ws://127.0.0.1:{ws_port}/", "-n", "1", "-o", "json")
    assert [(m["offset"], m["text"]) for m in json_lines_of(out)] == [(7, "m7")]

    # The same over TLS: a server with a certificate, its own history (a new position file).
    pos.unlink()
    tls, tls_port = procs.serve("--publish", "--resume", "--tls-cert", cert_file, "--tls-key",
                                key_file, "--metrics", "127.0.0.1:0")
    url = metrics_url(tls)
    target = f"127.0.0.1:{tls_port}"
    c = procs.framecast("connect", target, "--tls", "--tls-ca", ca_file, "--resume",
                        "--offset-file", pos, "-n", "1")
    wait_for_log(tls, rb"resumes at 1 \(new\)")
    feed = procs.framecast("send", target, "--tls", "--tls-ca", ca_file, stdin=subprocess.PIPE)
    feed.p.stdin.write(b"t1\n")
    feed.p.stdin.flush()
    assert c.wait() == 0 and c.stdout == b"t1\n"
    feed.p.stdin.write(b"t2\nt3\n")
    feed.p.stdin.close()
    assert feed.wait() == 0
    wait_until(lambda: metrics(url)["framecast_resume_next_offset"] == 4, "offset 4")
    assert run(target, "--tls", "--tls-ca", ca_file, "-n", "2", "-o", "lines") == b"t2\nt3\n"


def json_lines_of(out):
    return [json.loads(line) for line in out.decode().splitlines() if line]
