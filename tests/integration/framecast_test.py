"""Helpers for integration tests: the real framecast binary and Python peers that speak the
tutorial's protocol (../shared/seed/buffering-and-streaming.md). Loopback only; every wait
has a deadline."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

BIN = os.environ.get("FRAMECAST_BIN", "framecast")
HEADERSIZE = 10
DEADLINE = 20.0  # seconds any single wait may take before the test fails


def frame(payload, headersize=HEADERSIZE):
    """The tutorial's framing: f"{len(msg):<HEADERSIZE}" + msg, in bytes."""
    if isinstance(payload, str):
        payload = payload.encode()
    return f"{len(payload):<{headersize}}".encode() + payload


class FrameReader:
    """A correct reader of the tutorial's framing (unlike the tutorial's client): header split
    across reads, many frames per read, lengths in bytes."""

    def __init__(self, sock, headersize=HEADERSIZE, bufsize=65536):
        self.sock, self.h, self.bufsize, self.buf = sock, headersize, bufsize, b""

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(self.bufsize)
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buf)} bytes pending")
            self.buf += chunk

    def read(self, timeout=DEADLINE):
        deadline = time.monotonic() + timeout
        self._fill(self.h, deadline)
        length = int(self.buf[: self.h])
        self._fill(self.h + length, deadline)
        payload = self.buf[self.h : self.h + length]
        self.buf = self.buf[self.h + length :]
        return payload


def connect(port, host="127.0.0.1", timeout=DEADLINE):
    return socket.create_connection((host, port), timeout=timeout)


def small_rcvbuf_socket(port, timeout=DEADLINE):
    """A client whose kernel receive buffer holds little (4 KiB asked), so what it does not read
    piles up in the server's queue rather than in the kernel."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


class Proc:
    """A running framecast (or other) process with its output collected in the background."""

    def __init__(self, args, stdin=None, env=None, **popen_kw):
        self.args = args
        self.p = subprocess.Popen(args, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                  **popen_kw)
        self.out, self.err = bytearray(), bytearray()
        self._cv = threading.Condition()
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out), daemon=True),
                         threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream, sink):
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            with self._cv:
                sink.extend(chunk)
                self._cv.notify_all()

    def wait_for(self, pattern, stream="err", timeout=DEADLINE):
        """Waits until `pattern` (regex, bytes) appears in stdout/stderr; returns the match."""
        sink = self.out if stream == "out" else self.err
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                m = rx.search(bytes(sink))
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not any(t.is_alive() for t in self._threads)):
                    raise AssertionError(
                        f"{pattern!r} not seen in std{stream} of {self.args}\n"
                        f"stdout: {bytes(self.out)[-2000:]!r}\nstderr: {bytes(self.err)[-2000:]!r}")
                self._cv.wait(min(left, 0.1))

    def wait(self, timeout=DEADLINE):
        rc = self.p.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return rc

    def signal(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            self.p.send_signal(sig)

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    @property
    def stdout(self):
        return bytes(self.out)

    @property
    def stderr(self):
        return bytes(self.err)


class Processes:
    def __init__(self):
        self.all = []

    def start(self, args, **kw):
        p = Proc([str(a) for a in args], **kw)
        self.all.append(p)
        return p

    def framecast(self, *args, **kw):
        return self.start([BIN, *args], **kw)

    def serve(self, *args, listen="127.0.0.1:0", **kw):
        """Starts `framecast serve --listen HOST:0 ...` and returns (proc, port). The server
        prints `listening on HOST:PORT` on stdout once it accepts connections."""
        p = self.framecast("serve", "--listen", listen, *args, **kw)
        m = p.wait_for(rb"listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+|[^\s:]+):(\d+)\n", stream="out")
        return p, int(m.group(2))

    def python(self, source, *args, **kw):
        return self.start([sys.executable, "-u", "-c", source, *args], **kw)

    def stop_all(self):
        for p in self.all:
            p.kill()


# --- waiting on events, never on the clock ----------------------------------------------------
# A test waits for something the other side shows: a log line, a metric, a connection. Each wait
# has a deadline and fails naming what it waited for.

def wait_until(predicate, what, timeout=DEADLINE, interval=0.02):
    """Polls predicate() until it returns something truthy, and returns that. Fails after
    `timeout` seconds with "timed out ... waiting for <what>" (`what` may be a callable giving
    the text, so it can show the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {text}")
        time.sleep(interval)  # poll interval, not a guess at readiness


def wait_for_log(proc, pattern, timeout=DEADLINE):
    """Waits for a line matching `pattern` (regex, bytes) in the process's log (stderr)."""
    return proc.wait_for(pattern, stream="err", timeout=timeout)


def client_name(sock):
    """How the server names the client on the other end of `sock` in its log: HOST:PORT."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_for_client(server, sock, timeout=DEADLINE):
    """Waits until the server has admitted the client connected through `sock` (its
    "client HOST:PORT connected (N clients)" line): from then on broadcasts reach it."""
    return wait_for_log(server, rb"client %s connected \(\d+ clients\)"
                        % re.escape(client_name(sock).encode()), timeout)


def metrics_url(proc):
    """The /metrics URL of a server started with --metrics HOST:0 (printed on its stdout)."""
    return proc.wait_for(rb"metrics on (http://\S+/metrics)", stream="out").group(1).decode()


def scrape(url_or_port, path="/metrics"):
    """(HTTP status, body) of a metrics endpoint, given its /metrics URL or its port."""
    if isinstance(url_or_port, int):
        url = f"http://127.0.0.1:{url_or_port}{path}"
    else:
        url = url_or_port.rsplit("/", 1)[0] + path
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def metrics(target):
    """The server's Prometheus samples as {name{labels}: value}. `target`: a Proc started with
    --metrics, a /metrics URL, or the metrics port."""
    _, text = scrape(metrics_url(target) if isinstance(target, Proc) else target)
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_for_metric(target, name, check, timeout=DEADLINE, what=None):
    """Waits until metric `name` (with its labels, e.g. 'framecast_decode_errors_total{kind="x"}')
    satisfies `check`: a number (equal to it) or a predicate on the value (a missing metric
    reads 0); `what` describes a predicate in the failure message ("> 0"). Returns all the
    samples of the scrape that satisfied it."""
    if isinstance(target, Proc):
        target = metrics_url(target)
    ok = check if callable(check) else (lambda v: v == check)
    wanted = (what or "satisfying the check") if callable(check) else f"== {check}"
    last = {}

    def satisfied():
        last.update(m=metrics(target))
        return last["m"] if ok(last["m"].get(name, 0.0)) else None

    return wait_until(satisfied, lambda: f"metric {name} {wanted} at {target} "
                                         f"(last value {last.get('m', {}).get(name)})", timeout)


# --- the tutorial's own programs, as the seed writes them (host and port made parameters) ---

def tutorial_client_source(port, host="127.0.0.1"):
    """client.py from the seed, unchanged but for host and port."""
    return f'''import socket

HEADERSIZE = 10

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("{host}", {port}))

while True:
    full_msg = ''
    new_msg = True
    while True:
        msg = s.recv(16)
        if new_msg:
            print("new msg len:",msg[:HEADERSIZE])
            msglen = int(msg[:HEADERSIZE])
            new_msg = False

        print(f"full message length: {{msglen}}")

        full_msg += msg.decode("utf-8")

        print(len(full_msg))


        if len(full_msg)-HEADERSIZE == msglen:
            print("full msg recvd")
            print(full_msg[HEADERSIZE:])
            new_msg = True
            full_msg = ""
'''


def tutorial_server_source(sleep=3):
    """server.py from the seed, binding 127.0.0.1 on a free port (printed first) instead of
    gethostname():1243, with the sleep adjustable."""
    return f'''import socket
import time


HEADERSIZE = 10

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(5)
print("port", s.getsockname()[1], flush=True)

while True:
    # now our endpoint knows about the OTHER endpoint.
    clientsocket, address = s.accept()
    print(f"Connection from {{address}} has been established.")

    msg = "Welcome to the server!"
    msg = f"{{len(msg):<{{HEADERSIZE}}}}"+msg

    clientsocket.send(bytes(msg,"utf-8"))

    while True:
        time.sleep({sleep})
        msg = f"The time is {{time.time()}}"
        msg = f"{{len(msg):<{{HEADERSIZE}}}}"+msg

        print(msg)

        clientsocket.send(bytes(msg,"utf-8"))
'''


def free_port():
    """A loopback port nothing listens on (bound, read back, closed): for connection-refused cases
    and for servers that must be told their port up front."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
