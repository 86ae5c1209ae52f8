"""The --metrics HTTP endpoint under abuse and odd requests: its limits (8 KiB of header, no
body, GET/HEAD only, 2 s per request, 64 connections) keep the server small and /healthz
answering. Real binary, loopback; every wait is on an event (a close, an answer)."""
import http.client
import re
import socket
import threading
import time

from framecast_test import free_port
from framecast_test import DEADLINE


def serve_with_metrics(procs, *args):
    server, port = procs.serve("--metrics", "127.0.0.1:0", *args)
    m = server.wait_for(rb"metrics on http://127\.0\.0\.1:(\d+)/metrics", stream="out")
    return server, int(m.group(1))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def request(mport, method, path, body=None, headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", mport, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def healthz_seconds(mport):
    t0 = time.monotonic()
    status, _, body = request(mport, "GET", "/healthz", timeout=DEADLINE)
    assert (status, body) == (200, b"ok\n")
    return time.monotonic() - t0


def closed_by_peer(sock, timeout):
    """Waits for the peer to close `sock` (EOF or reset); True if it did within `timeout`."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_endless_header_lines_are_cut_and_memory_stays_flat(procs):
    server, mport = serve_with_metrics(procs)
    healthz_seconds(mport)  # the endpoint is up and has answered once
    before = rss_kib(server.p.pid)
    s = socket.create_connection(("127.0.0.1", mport))
    s.settimeout(DEADLINE)
    line = b"X-Filler: " + b"a" * 20 + b"\r\n"
    chunk = line * (65536 // len(line))
    attempted, cut = 0, False
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        while attempted < 50 << 20:  # 50 MiB of short header lines, unless cut first
            s.sendall(chunk)
            attempted += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        cut = True
    grown = rss_kib(server.p.pid) - before
    print(f"\nheader flood: {attempted} bytes sent before the cut, RSS grew {grown} KiB")
    assert cut, f"the server read {attempted} bytes of header without closing"
    assert attempted < 8 << 20
    assert grown < 16 * 1024
    assert healthz_seconds(mport) < 1.0


def test_trickling_connections_do_not_stall_healthz_and_are_cut_at_2s(procs):
    server, mport = serve_with_metrics(procs)
    stop = threading.Event()
    tricklers = [socket.create_connection(("127.0.0.1", mport)) for _ in range(8)]

    def trickle(sock):
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            if stop.wait(0.25):  # the attack's pace, not a synchronisation
                return

    threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in tricklers]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    latencies = [healthz_seconds(mport) for _ in range(5)]
    print(f"\n/healthz with 8 tricklers: worst {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 1.0
    for s in tricklers:
        assert closed_by_peer(s, 5.0)
    held = time.monotonic() - t0
    stop.set()
    print(f"tricklers cut after {held:.2f} s")
    assert 1.5 < held < 4.0


def test_connections_beyond_64_are_closed_at_once(procs):
    server, mport = serve_with_metrics(procs)
    idle = [socket.create_connection(("127.0.0.1", mport)) for _ in range(64)]
    # Accepted in order: the 65th finds every slot taken and is closed at once.
    extra = socket.create_connection(("127.0.0.1", mport))
    assert closed_by_peer(extra, 1.5)
    for s in idle:  # the 2 s deadline frees the slots
        assert closed_by_peer(s, 5.0)
    assert healthz_seconds(mport) < 1.0


def test_methods_paths_and_bodies(procs):
    server, mport = serve_with_metrics(procs)
    status, headers, body = request(mport, "GET", "/metrics")
    assert status == 200 and b"framecast_clients_connected 0" in body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    status, headers, body = request(mport, "HEAD", "/metrics")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 100
    status, headers, _ = request(mport, "POST", "/metrics")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert request(mport, "DELETE", "/healthz")[0] == 405
    assert request(mport, "GET", "/healthz", body=b"hello")[0] == 413
    assert request(mport, "GET", "/nope")[0] == 404
    assert request(mport, "GET", "/healthz?verbose=1")[:3:2] == (200, b"ok\n")
    status, _, body = request(mport, "GET", "/metrics", headers={"X-Big": "a" * 9000})
    assert status == 431


def test_keep_alive_serves_several_requests(procs):
    server, mport = serve_with_metrics(procs)
    c = http.client.HTTPConnection("127.0.0.1", mport, timeout=5)
    for path in ["/healthz", "/metrics", "/healthz"]:
        c.request("GET", path)
        r = c.getresponse()
        assert r.status == 200 and r.read()
    c.close()


def test_metrics_address_in_use_is_reported(procs):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    p = procs.framecast("serve", "--listen", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}")
    assert p.wait() == 8
    assert re.search(rb"cannot serve metrics on 127\.0\.0\.1:%d: [Aa]ddress already in use" % port,
                     p.stderr), p.stderr
    holder.close()


def test_stats_takes_a_url(procs):
    server, mport = serve_with_metrics(procs)
    stats = procs.framecast("stats", f"http://127.0.0.1:{mport}/metrics", "--count", "1")
    assert stats.wait() == 0, stats.stderr
    assert re.search(rb"clients\s+0 connected", stats.stdout), stats.stdout


def test_stats_shows_the_whole_reason(procs):
    port = free_port()
    stats = procs.framecast("stats", f"http://127.0.0.1:{port}/metrics", "--count", "1")
    assert stats.wait() == 3
    assert b"cannot read http://127.0.0.1:%d/metrics: Connection refused\n" % port in stats.stderr, \
        stats.stderr
    server, mport = serve_with_metrics(procs)
    stats = procs.framecast("stats", f"http://127.0.0.1:{mport}/nothing", "--count", "1")
    assert stats.wait() == 3
    assert b"/nothing: HTTP 404" in stats.stderr, stats.stderr
