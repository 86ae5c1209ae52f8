"""Backpressure (serve --backpressure): a source that can wait (stdin, a publishing client) waits
for a client whose queue is over half of --client-buffer instead of filling it, so a client that
pauses loses nothing; and a client that never reads holds the source back for --backpressure at
most, then is left to the slow-consumer policy. Each case has its --backpressure 0 control, where
the same client is cut off: the tests fail when pacing does not work. Loopback only, port 0,
every wait bounded."""
import re
import subprocess
import threading
import time

import pytest

from framecast_test import connect, frame, small_rcvbuf_socket

LINES = 8000
LINE = 1000  # bytes per message: 8 MB in all, 32x --client-buffer


def lines():
    return [b"%09d " % i + b"x" * (LINE - 10) for i in range(LINES)]


def read_to_eof(sock, timeout=60.0):
    got = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 20)
        except ConnectionResetError:
            return bytes(got)
        if not chunk:
            return bytes(got)
        got += chunk


class Feeder(threading.Thread):
    """Writes `data` into a pipe or socket with blocking writes (the source's pace)."""

    def __init__(self, write, data, close):
        super().__init__(daemon=True)
        self.write, self.data, self.close = write, data, close
        self.error = None

    def run(self):
        try:
            view = memoryview(self.data)
            for i in range(0, len(view), 65536):
                self.write(view[i:i + 65536])
        except OSError as e:
            self.error = e
        finally:
            self.close()


def serve_stdin(procs, backpressure, *extra):
    return procs.serve("--source", "stdin", "--welcome", "", "--client-buffer", "256KiB",
                       "--max-message", "2KiB", "--backpressure", backpressure, *extra,
                       stdin=subprocess.PIPE)


@pytest.mark.parametrize("backpressure", ["20", "0"])
def test_stdin_waits_for_a_client_that_pauses(procs, backpressure):
    server, port = serve_stdin(procs, backpressure)
    client = small_rcvbuf_socket(port)
    server.wait_for(rb"connected \(1 clients\)")
    msgs = lines()
    feeder = Feeder(server.p.stdin.write, b"".join(m + b"\n" for m in msgs), server.p.stdin.close)
    feeder.start()
    time.sleep(1.5)  # the client reads nothing for a while (the subject, not synchronisation)
    got = read_to_eof(client)
    feeder.join(timeout=60)
    assert server.wait(timeout=60) == 0
    err = server.stderr.decode()
    if backpressure == "0":
        # The control: without pacing the same client is cut off.
        assert "disconnected: slow consumer" in err, err[-2000:]
        assert len(got) < LINES * (LINE + 10)
        return
    assert "disconnected: slow consumer" not in err, err[-2000:]
    assert got == b"".join(frame(m) for m in msgs)
    waits = int(re.search(r"backpressure: (\d+) waits", err).group(1))
    assert waits >= 1, err[-2000:]


def test_a_client_that_never_reads_holds_the_source_back_only_for_a_while(procs):
    server, port = serve_stdin(procs, "0.5")
    stuck = small_rcvbuf_socket(port)
    stuck_name = "127.0.0.1:%d" % stuck.getsockname()[1]
    reader = connect(port)
    server.wait_for(rb"connected \(2 clients\)")
    msgs = lines()
    feeder = Feeder(server.p.stdin.write, b"".join(m + b"\n" for m in msgs), server.p.stdin.close)
    started = time.monotonic()
    feeder.start()
    got = read_to_eof(reader)
    elapsed = time.monotonic() - started
    feeder.join(timeout=60)
    assert server.wait(timeout=60) == 0
    assert got == b"".join(frame(m) for m in msgs)
    server.wait_for(rb"client %s: queue over half of the client buffer for 500 ms; no longer "
                    rb"holding back the sources" % stuck_name.encode())
    server.wait_for(rb"client %s disconnected: slow consumer" % stuck_name.encode())
    assert elapsed < 30, elapsed
    stuck.close()


@pytest.mark.parametrize("backpressure", ["20", "0"])
def test_a_publisher_waits_for_a_subscriber_that_pauses(procs, backpressure):
    server, port = procs.serve("--publish", "--source", "none", "--welcome", "",
                               "--client-buffer", "256KiB", "--max-message", "2KiB",
                               "--backpressure", backpressure)
    subscriber = small_rcvbuf_socket(port)
    server.wait_for(rb"connected \(1 clients\)")
    publisher = connect(port)
    server.wait_for(rb"connected \(2 clients\)")
    msgs = lines()
    publisher.settimeout(60)
    feeder = Feeder(publisher.sendall, b"".join(frame(m) for m in msgs),
                    lambda: None)
    feeder.start()
    time.sleep(1.5)  # the subscriber reads nothing for a while: the subject (not synchronisation)
    if backpressure == "0":
        server.wait_for(rb"disconnected: slow consumer")
        feeder.join(timeout=60)
        publisher.close()
        return
    expected = b"".join(frame(m) for m in msgs)
    got = bytearray()
    subscriber.settimeout(30)
    while len(got) < len(expected):
        chunk = subscriber.recv(1 << 20)
        assert chunk, "subscriber cut off after %d bytes" % len(got)
        got += chunk
    feeder.join(timeout=60)
    assert feeder.error is None
    assert bytes(got) == expected
    assert b"disconnected: slow consumer" not in server.stderr
    publisher.close()
    server.signal()
    assert server.wait() == 0
    # A publisher's messages travel in batches (one per read) but are counted one by one.
    summary = server.wait_for(rb"(\d+) messages broadcast, (\d+) frames / \d+ bytes written; "
                              rb"(\d+) in")
    assert [int(g) for g in summary.groups()] == [LINES, LINES, LINES]
