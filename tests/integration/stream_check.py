"""Stream checks shared by the fault, churn and soak tests: a steady sequence-numbered feed
into `framecast serve --source stdin`, clients that verify they got all of it exactly once,
and ways for a client to leave (RST)."""
import socket
import struct
import threading
import time

from framecast_test import FrameReader, connect


def rss_kib(pid):
    """The process's resident set (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def sanitized(binary):
    """True if `binary` is built with ASan or TSan (its RSS says nothing about leaks then:
    freed memory sits in quarantine / shadow)."""
    with open(binary, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__tsan_init" in data


def reset(sock):
    """Closes with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def name_of(sock):
    return b"127.0.0.1:%d" % sock.getsockname()[1]


class SeqFeed:
    """Feeds `seq NNNNNNNN` lines into a server's stdin at a steady rate from a thread."""

    def __init__(self, server, rate, prefix=b"seq"):
        self.server, self.rate, self.prefix = server, rate, prefix
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        period = 0.01
        per_tick = max(1, int(self.rate * period))
        next_t = time.monotonic()
        while not self._stop.is_set():
            lines = b"".join(b"%s %08d\n" % (self.prefix, self.sent + i) for i in range(per_tick))
            self.server.p.stdin.write(lines)
            self.server.p.stdin.flush()
            self.sent += per_tick
            next_t += period
            time.sleep(max(0, next_t - time.monotonic()))  # the feed's rate (not synchronisation)

    def finish(self):
        """Stops feeding and closes stdin: the server flushes every queue and exits 0."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.server.p.stdin.close()
        return self.sent


class SteadyClient:
    """Reads frames until the server closes; afterwards check() the `seq` stream is exactly
    0..n-1: nothing missed, nothing duplicated, nothing out of order."""

    def __init__(self, port, prefix=b"seq "):
        self.sock = connect(port)
        self.prefix = prefix
        self.seqs, self.other, self.error = [], 0, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        r = FrameReader(self.sock)
        try:
            while True:
                m = r.read(timeout=60)
                if m.startswith(self.prefix):
                    self.seqs.append(int(m[len(self.prefix):]))
                else:
                    self.other += 1
        except EOFError:
            pass
        except Exception as e:  # noqa: BLE001 - reported by check()
            self.error = e

    def check(self, n):
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "steady client still reading"
        assert self.error is None, repr(self.error)
        missing = sorted(set(range(n)) - set(self.seqs))
        assert self.seqs == list(range(n)), (
            f"got {len(self.seqs)} of {n}; first missing {missing[:5]}; "
            f"duplicates {len(self.seqs) - len(set(self.seqs))}")


