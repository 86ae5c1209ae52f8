"""Operating framecast: /metrics and /healthz move with real traffic, framecast stats, the TOML
config file, JSON logs. Real binary, loopback, ports from port 0."""
import json
import re
import socket
import subprocess
import threading
import time

from framecast_test import free_port
from framecast_test import BIN, DEADLINE, FrameReader, connect, frame, metrics, scrape
from framecast_test import wait_for_metric


def serve_with_metrics(procs, *args, **kw):
    server, port = procs.serve("--metrics", "127.0.0.1:0", *args, **kw)
    mport = int(server.wait_for(rb"metrics on http://127\.0\.0\.1:(\d+)/metrics", stream="out").group(1))
    return server, port, mport


def test_metrics_counters_follow_real_traffic(procs):
    server, port, mport = serve_with_metrics(
        procs, "--source", "stdin", "--welcome", "", "--max-message", "2KiB",
        "--client-buffer", "1MiB", stdin=subprocess.PIPE)
    status, body = scrape(mport, "/healthz")
    assert status == 200 and body == "ok\n"
    before = metrics(mport)
    assert before["framecast_clients_connected"] == 0
    assert before['framecast_decode_errors_total{kind="header_invalid_char"}'] == 0

    readers = [connect(port) for _ in range(2)]
    stuck = connect(port)  # never reads: a slow consumer
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    wait_for_metric(mport, "framecast_clients_connected", 3)

    # A malformed header closes that client and counts as a decode error of its kind.
    bad = connect(port)
    bad.sendall(b"abc       hello")
    m = wait_for_metric(mport, 'framecast_decode_errors_total{kind="header_invalid_char"}', 1)
    assert m["framecast_messages_in_total"] == 0

    # Stream enough to overflow the stuck client's 1 MiB queue (and the kernel buffers before
    # it), while the readers drain theirs.
    line = b"x" * 1000 + b"\n"
    total = 8000
    got = [0, 0]

    def drain(i):
        r = FrameReader(readers[i])
        while got[i] < total:
            assert len(r.read()) == 1000
            got[i] += 1

    threads = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    # Paced so the readers are never more than ~300 KB behind: whether a reader keeps up with
    # an unpaced 8 MB burst depends on the machine (under TSan it never does), and a reader
    # that falls 1 MiB behind is rightly cut as a slow consumer too.
    deadline = time.monotonic() + DEADLINE
    for sent in range(100, total + 1, 100):
        server.p.stdin.write(line * 100)
        server.p.stdin.flush()
        while min(got) < sent - 300 and time.monotonic() < deadline:
            time.sleep(0.001)  # poll interval: waits for the readers (bounded above)
    for t in threads:
        t.join(timeout=DEADLINE)
    assert got == [total, total], server.stderr.decode()[-3000:]

    m = wait_for_metric(mport, 'framecast_slow_consumer_actions_total{policy="disconnect"}', 1)
    assert m["framecast_messages_broadcast_total"] == total
    assert m["framecast_messages_out_total"] >= 2 * total
    assert m["framecast_bytes_out_total"] >= 2 * total * 1010
    assert m["framecast_broadcast_deliveries_total"] >= 2 * total
    assert m["framecast_clients_accepted_total"] == 4
    assert m["framecast_clients_connected"] == 2
    assert m['framecast_client_queue_bytes_bucket{le="+Inf"}'] == 2
    assert m["framecast_client_queue_bytes_count"] == 2
    assert m["framecast_bytes_in_total"] == len(b"abc       hello")
    server.p.stdin.close()
    assert server.wait() == 0


def test_stats_prints_a_summary(procs):
    server, port, mport = serve_with_metrics(procs, "--interval", "0.1")
    client = connect(port)
    FrameReader(client).read()
    stats = procs.framecast("stats", f"127.0.0.1:{mport}", "--count", "2", "--interval", "0.3")
    assert stats.wait() == 0
    out = stats.stdout.decode()
    assert re.search(r"clients\s+1 connected\s+1 accepted", out), out
    # The second screen has a rate: about 10 broadcasts a second.
    rates = re.findall(r"broadcasts\s+([\d.]+)/s", out)
    assert len(rates) == 2 and float(rates[1]) > 2, out


def test_stats_against_nothing_fails_clearly(procs):
    port = free_port()
    stats = procs.framecast("stats", f"127.0.0.1:{port}", "--count", "1")
    assert stats.wait() == 3
    assert b"cannot read http://127.0.0.1:" in stats.stderr


def test_config_file_sets_options_and_command_line_wins(procs, tmp_path):
    cfg = tmp_path / "framecast.toml"
    cfg.write_text('[serve]\nlisten = ["127.0.0.1:0"]\nwelcome = "hello from toml"\ninterval = 0.1\n')
    server = procs.framecast("--config", cfg, "serve")
    port = int(server.wait_for(rb"listening on 127\.0\.0\.1:(\d+)", stream="out").group(1))
    r = FrameReader(connect(port))
    assert r.read() == b"hello from toml"
    assert r.read().startswith(b"The time is ")  # interval 0.1 s from the file

    server2 = procs.framecast("--config", cfg, "serve", "--welcome", "from the command line")
    port2 = int(server2.wait_for(rb"listening on 127\.0\.0\.1:(\d+)", stream="out").group(1))
    assert FrameReader(connect(port2)).read() == b"from the command line"


def test_config_file_unknown_key_is_an_error_naming_it(procs, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[serve]\nlisten = ["127.0.0.1:0"]\nwelcom = "typo"\n')
    p = procs.framecast("--config", cfg, "serve")
    assert p.wait() == 2
    assert b"unknown key 'serve.welcom'" in p.stderr


def test_config_file_missing_is_an_error(procs, tmp_path):
    p = procs.framecast("--config", tmp_path / "nope.toml", "serve")
    assert p.wait() == 2
    assert b"nope.toml" in p.stderr


def test_json_logs_are_one_object_per_line(procs):
    server, port = procs.serve("--log-format", "json", "--interval", "0.1")
    c = connect(port)
    c.sendall(b'bad"header\\hello')  # quotes and backslashes must be escaped in the log
    server.wait_for(rb"bad input")
    server.signal()
    assert server.wait() == 0
    lines = server.stderr.decode().strip().splitlines()
    assert len(lines) >= 3
    for line in lines:
        obj = json.loads(line)
        assert set(obj) == {"time", "level", "msg"}
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", obj["time"])
    assert any("bad input" in json.loads(l)["msg"] and 'bad"header' in json.loads(l)["msg"] for l in lines)


def test_version_prints_version_and_build_info(procs):
    p = procs.framecast("--version")
    assert p.wait() == 0
    assert re.match(rb"framecast \d+\.\d+\.\d+ \(git [0-9a-f]+|unknown", p.stdout), p.stdout
