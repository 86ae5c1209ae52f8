"""The attacks of issue 14 ("safe to expose"), as functions the integration tests call and as a
script that prints each attack's figures against a given binary, so the same code measures the
server before and after a change:

    /usr/bin/python3 tests/integration/attacks.py --bin build/default/apps/framecast/framecast

Loopback only; every wait has a deadline."""
import argparse
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import framecast_test as ft  # noqa: E402
from framecast_test import FrameReader, connect, frame  # noqa: E402

MIB = 1024 * 1024


def raise_nofile(want):
    """Raises this process's soft RLIMIT_NOFILE to `want` (at most the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mib(pid):
    """Resident set size of `pid`, in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class PartialFrames:
    """`n` clients that each announce a `size`-byte frame and send all of it but the last byte,
    then stop (the memory attack). Sends without blocking on any one socket: stops when all is
    sent or nothing moved for `stall` seconds (the server stopped reading)."""

    def __init__(self, port, n, size=MIB, stall=2.0, timeout=60.0):
        self.socks, self.sent, self.refused = [], [], 0
        body = memoryview(frame(b"x" * size)[:-1])
        sel = selectors.DefaultSelector()
        for i in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                self.refused += 1
                continue
            s.setblocking(False)
            self.socks.append(s)
            self.sent.append(0)
            sel.register(s, selectors.EVENT_WRITE, len(self.socks) - 1)
        self.total = len(body)
        deadline = time.monotonic() + timeout
        last_progress = time.monotonic()
        left = len(self.socks)
        while left and time.monotonic() < deadline and time.monotonic() - last_progress < stall:
            for key, _ in sel.select(timeout=0.2):
                i = key.data
                try:
                    k = key.fileobj.send(body[self.sent[i]:self.sent[i] + 256 * 1024])
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    k = 0
                    self.sent[i] = self.total  # closed by the server
                self.sent[i] += k
                last_progress = time.monotonic()
                if self.sent[i] >= self.total:
                    sel.unregister(key.fileobj)
                    left -= 1
        sel.close()

    def bytes_sent(self):
        return sum(self.sent)

    def close(self):
        for s in self.socks:
            s.close()


def peak_rss_mib(pid, seconds=2.0):
    """Highest RSS of `pid` over the next `seconds` (sampled every 0.1 s)."""
    end, peak = time.monotonic() + seconds, 0.0
    while time.monotonic() < end:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.1)  # sampling interval of a figure, not a synchronisation
    return peak


def first_frame_delay(port, timeout=30.0):
    """Seconds from connect to the first frame (the welcome) on a new client; None if refused
    or nothing came within `timeout`."""
    t0 = time.monotonic()
    try:
        with connect(port, timeout=timeout) as s:
            FrameReader(s).read(timeout=timeout)
    except (OSError, EOFError, ValueError):
        return None
    return time.monotonic() - t0


def name_verdicts(server, port, names):
    """Joins `alice`, then each of `names` while alice stays: {name: True if it joined}. Reads
    the verdict from the server's log ("<name> joined from HOST:PORT" or a close)."""
    keep = connect(port)
    keep.sendall(frame("alice"))
    ft.wait_for_log(server, rb"alice joined from")
    out = {}
    for name in names:
        s = connect(port)
        me = ft.client_name(s).encode()
        s.sendall(frame(name))
        m = ft.wait_for_log(server, rb"(joined from %s\n|client %s disconnected: [^\n]*\n)"
                            % (me, me))
        out[name] = b"joined" in m.group(0)
        s.close()
    keep.close()
    return out


LOOKALIKES = ["\u0430lice", "alice\u200b", "alice ", "\u202eecila", "bob > hi\nalice",
              "al\u2028ice", "al\u0085ice", "\u0430l\u0456ce"]


def chat_latency(server, port, seconds, flood=False):
    """p50/p99 latency (ms) of messages between two honest chat clients, optionally while a
    third client floods the room with empty frames."""
    a, b = connect(port), connect(port)
    a.sendall(frame("honest-a"))
    b.sendall(frame("honest-b"))
    ft.wait_for_log(server, rb"honest-b joined from")
    ft.wait_for_log(server, rb"honest-a joined from")
    stop = threading.Event()
    flooder = None
    if flood:
        f = connect(port)
        f.sendall(frame("flooder"))
        burst = frame(b"") * 4096

        def run():
            try:
                while not stop.is_set():
                    f.sendall(burst)
            except OSError:
                pass
        flooder = threading.Thread(target=run, daemon=True)
        flooder.start()
        # The flooder's relays reach b too: drain them in the reader below.
    reader = FrameReader(b)
    lat = []
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        k += 1
        tag = f"m{k}-{time.monotonic()}".encode()
        t0 = time.monotonic()
        a.sendall(frame(tag))
        try:
            while True:
                user = reader.read(timeout=10)
                msg = reader.read(timeout=10)
                if user == b"honest-a" and msg == tag:
                    break
        except (OSError, EOFError, ValueError):
            break
        lat.append((time.monotonic() - t0) * 1000)
        time.sleep(0.05)
    stop.set()
    for s in (a, b):
        s.close()
    return percentiles(lat)


def percentiles(xs):
    if not xs:
        return {"n": 0, "p50": None, "p99": None}
    xs = sorted(xs)
    return {"n": len(xs), "p50": round(statistics.median(xs), 1),
            "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 1), "max": round(xs[-1], 1)}


def backpressure_cycle(port, seconds, warmup=3.0, until=None, stalled=False):
    """Issue 14's cycle: a publisher sends 256 KiB frames non-stop; a second client (4 KiB
    receive buffer) sleeps 1.8 s, reads 0.25 s, repeats; an honest publisher's messages are
    timed at a third, reading client. Runs for `seconds`, or until `until()` (checked about
    twice a second) returns true. Returns the honest latency percentiles after `warmup`.
    `stalled`: the second client never reads at all (one hold, then the slow-consumer policy)."""
    stop = threading.Event()
    big = connect(port)
    big_frame = frame(b"b" * (256 * 1024))
    cycler = ft.small_rcvbuf_socket(port)
    honest, sink = connect(port), connect(port)

    def blast():
        try:
            while not stop.is_set():
                big.sendall(big_frame)
        except OSError:
            pass

    def cycle():
        cycler.settimeout(0.05)
        if stalled:
            return
        try:
            while not stop.is_set():
                time.sleep(1.8)
                end = time.monotonic() + 0.25
                while time.monotonic() < end:
                    try:
                        if not cycler.recv(4096):
                            return
                    except socket.timeout:
                        pass
        except OSError:
            pass

    def drain_big():  # big's own socket receives the others' messages: keep it read
        big.settimeout(0.5)
        try:
            while not stop.is_set():
                try:
                    if not big.recv(1 << 20):
                        return
                except socket.timeout:
                    pass
        except OSError:
            pass

    threads = [threading.Thread(target=f, daemon=True) for f in (blast, cycle, drain_big)]
    for t in threads:
        t.start()
    reader = FrameReader(sink, bufsize=1 << 20)
    lat = []
    start = time.monotonic()
    checked = start
    honest_ok = True
    k = 0
    while time.monotonic() - start < seconds:
        if until is not None and time.monotonic() - checked > 0.5:
            checked = time.monotonic()
            if until():
                break
        if not honest_ok:  # the sink was cut off (a slow consumer itself): the attack goes on
            time.sleep(0.1)
            continue
        k += 1
        tag = f"honest-{k}-".encode()
        t0 = time.monotonic()
        try:
            honest.sendall(frame(tag))
            while True:
                if reader.read(timeout=10) == tag:
                    break
        except (OSError, EOFError, ValueError):
            honest_ok = False
            continue
        if time.monotonic() - start > warmup:
            lat.append((time.monotonic() - t0) * 1000)
        time.sleep(0.02)
    stop.set()
    for s in (big, cycler, honest, sink):
        s.close()
    return percentiles(lat)


def connect_close_log_bytes(server, port, seconds):
    """Connects and closes (with an RST after a bad header) as fast as one thread can for
    `seconds`; returns (cycles, log bytes written meanwhile)."""
    before = len(server.err)
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"bad header")
            s.close()
            n += 1
        except OSError:
            pass
    time.sleep(0.5)  # let the server finish logging what it read (figure only, not a test)
    return n, len(server.err) - before


# --- the script: every attack's figures against one binary ----------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--only", default="", help="comma-separated: memory,names,flood,"
                    "backpressure,flood-hold,logs,backplane")
    ap.add_argument("--extra", default="",
                    help='more serve options, one string: --extra="--max-per-address 0"')
    args = ap.parse_args()
    ft.BIN = os.path.abspath(args.bin)
    raise_nofile(4 * args.clients + 256)
    procs = ft.Processes()
    only = set(args.only.split(",")) - {""}
    want = lambda k: not only or k in only  # noqa: E731
    try:
        if want("memory"):
            for mode in ([], ["--publish"]):
                p, port = procs.serve(*mode, "--idle-timeout", "60", "--source", "none",
                                      *args.extra.split())
                base = rss_mib(p.p.pid)
                a = PartialFrames(port, args.clients)
                delay = first_frame_delay(port)
                peak = max(peak_rss_mib(p.p.pid), rss_mib(p.p.pid))
                print(f"memory {mode or ['default']}: {args.clients} clients x partial 1 MiB "
                      f"frame: RSS {base:.0f} -> {peak:.0f} MiB; sent {a.bytes_sent() / MIB:.0f} "
                      f"MiB; new client first frame after {delay} s", flush=True)
                a.close()
                p.kill()
        if want("names"):
            p, port = procs.serve("--chat", "--unique-names")
            v = name_verdicts(p, port, LOOKALIKES)
            print(f"names: {sum(v.values())} of {len(v)} look-alikes joined beside alice: "
                  f"{[n for n, ok in v.items() if ok]!r}", flush=True)
            p.kill()
        if want("flood"):
            p, port = procs.serve("--chat")
            quiet = chat_latency(p, port, 3)
            loud = chat_latency(p, port, 5, flood=True)
            print(f"chat flood: honest latency quiet {quiet}, with an empty-frame flooder {loud}",
                  flush=True)
            p.kill()
        if want("backpressure"):
            p, port = procs.serve("--publish")
            r = backpressure_cycle(port, 12)
            print(f"backpressure cycle: honest publisher latency after 3 s {r}", flush=True)
            p.kill()
        if want("flood-hold"):
            p, port = procs.serve("--publish", *args.extra.split())
            r = backpressure_cycle(port, 6, warmup=0, stalled=True)
            print(f"flood hold (a 256 KiB-frame flooder, a subscriber that never reads): honest "
                  f"publisher latency {r}", flush=True)
            p.kill()
        if want("logs"):
            p, port = procs.serve()
            n, b = connect_close_log_bytes(p, port, 3)
            print(f"logs: {n} bad-header connect/close cycles in 3 s wrote {b} bytes of log "
                  f"({b / max(n, 1):.0f} bytes per cycle)", flush=True)
            p.kill()
        if want("backplane") and shutil.which("redis-server"):
            backplane_figures(procs)
    finally:
        procs.stop_all()


def start_redis(tmp, port, password=None):
    extra = ["--requirepass", password] if password else []
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
                          tmp, "--save", "", "--appendonly", "no", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ft.wait_until(lambda: redis_cli(port, "PING", password=password) == "PONG",
                  "redis-server to start")
    return p


def redis_cli(port, *args, password=None):
    cmd = ["redis-cli", "-p", str(port)] + (["-a", password, "--no-auth-warning"] if password
                                            else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, timeout=10)
    return r.stdout.decode(errors="replace").strip()


def forge_entries(port, key, node_id, password=None):
    """One entry with a huge sequence number for `node_id`, one of garbage bytes."""
    redis_cli(port, "XADD", key, "*", "n", node_id, "s", "99999999999", "c", "0", "f",
              frame("forged").decode(), password=password)
    redis_cli(port, "XADD", key, "*", "n", "intruder", "s", "1", "c", "0", "f",
              "garbage \x01\x02 not a frame", password=password)


def backplane_figures(procs):
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        rport = ft.free_port()
        r = start_redis(tmp, rport)
        try:
            url = f"redis://127.0.0.1:{rport}/attack"
            p, port = procs.serve("--publish", "--backplane", url)
            node = ft.wait_for_log(p, rb"backplane \S+: node (\S+)").group(1).decode()
            sub, pub = connect(port), connect(port)
            ft.wait_for_client(p, sub)
            ft.wait_for_client(p, pub)
            forge_entries(rport, "attack", node)
            reader = FrameReader(sub)
            got = []
            for k in range(5):
                pub.sendall(frame(f"after-{k}"))
            try:
                while True:
                    got.append(reader.read(timeout=3))
            except (OSError, EOFError, ValueError, socket.timeout):
                pass
            honest = [g for g in got if g.startswith(b"after-")]
            garbage = [g for g in got if not g.startswith(b"after-")]
            print(f"backplane: after a forged sequence number and a garbage entry, {len(honest)}"
                  f" of 5 honest messages delivered; other frames seen by the client: "
                  f"{garbage!r}", flush=True)
            p.kill()
        finally:
            r.kill()
            r.wait()


if __name__ == "__main__":
    main()
