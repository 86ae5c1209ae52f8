#!/usr/bin/env python3
"""framecast against the raw-TCP ceiling, ZeroMQ and the tutorial's Python, in one run.

Runs the peer programs of bench/peers (each measures one thing and prints one JSON line) on
loopback, then writes a table to stdout, results.csv, results.json and PNG plots (gnuplot) to
--out. Progress goes to stderr. Every process runs under a time limit and is killed after it.

    bench/run.py --quick                       reduced set, under a minute
    bench/run.py                               the full set, under ten minutes
    framecast bench [--quick] ...              the same, through the CLI

Systems: ceiling (blocking sockets, prebuilt frames, in-place parsing: the physical limit),
framecast-direct (codec over sockets the way the I/O layer uses it), framecast-relay (stdin ->
`framecast serve` -> `framecast connect`), framecast-serve (fan-out through the server),
zeromq (PUSH/PULL, XPUB/SUB, REQ/REP), tutorial-python (the seed's framing, 16-byte recv).
The framecast-relay/-serve systems run the real `framecast` binary and are skipped, with a note,
when it lacks the subcommands.
"""
import argparse
import csv
import json
import os
import platform
import queue
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from procfs import rss_kib  # bench/procfs.py, beside this script

KiB = 1024
MiB = 1024 * 1024
SIZES = [16, 100, KiB, 64 * KiB, MiB]
FANOUT_K = [1, 100, 1000, 10000]
# Fan-out's saturated runs are pinned (--pin) from this K up, where the one subscriber process is
# the busy end; below it the publishing side is, and serve's three busy threads (its io thread,
# its stdin thread and the source) sharing one CPU understated it (Runner.fanout_cpus).
FANOUT_PIN_FROM = 100
HEADER = 10

# Which framecast row each scenario's ratios are taken against.
REFERENCE = {"throughput": "framecast-direct", "pingpong": "framecast-direct",
             "fanout": "framecast-serve", "relay": "framecast-direct"}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pair_cpus():
    """The two CPUs a pair's processes are pinned to (receiver, sender), or None when fewer
    than two are ours to use. Pinned, the two ends of a direct pair never share a core and
    never migrate: where the scheduler put them moved the small-frame rows by up to 0.3x
    between runs (docs/bench.md)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return (cpus[-1], cpus[-2]) if len(cpus) >= 2 else None


# Every throughput pair runs pinned under --pin alternate, ZeroMQ's and the tutorial's too, so
# every direct system runs in the same placement. Until session 23 only frames under 8 KiB did,
# and large frames ran where the scheduler put them. Unpinned at 1 MiB, the ceiling/
# framecast-direct ratio ran from 0.84x to 1.33x in three full runs, and ZeroMQ's receiver, put
# on the same vCPU as its sender, took 3.7-4.1 s of system time for 3,000 frames and ran at
# 760-830 msgs/s, against 5,900-7,000 pinned (64 KiB: 11,700-12,100 against 19,900-22,500):
# pinned is ZeroMQ's better placement there too (docs/bench.md, "Fan-out pinned").


def placement(i):
    """The CPUs (receiver, sender) of repeat i of a throughput pair: pair_cpus(), swapped in odd
    repeats, so each system runs in both placements and every system of one repeat in the same
    one. The two vCPUs here do not run at one speed: the same loop took 0.117 s on one and
    0.206 s on the other in the same minute, and which one was slow changed within minutes
    (docs/bench.md, "Paired repeats"). A pair's figure depended on where its two ends ran."""
    cpus = pair_cpus()
    if cpus is None:
        return None
    return cpus if i % 2 == 0 else (cpus[1], cpus[0])


def cpu_loop_ms():
    """How long one fixed Python loop takes on each of the two CPUs the pairs run on, in ms
    ({cpu: ms}): their speeds at that moment. Empty when there are not two or the affinity
    cannot be set."""
    cpus = pair_cpus()
    if cpus is None:
        return {}
    mine = os.sched_getaffinity(0)
    out = {}
    try:
        for c in sorted(cpus):
            os.sched_setaffinity(0, {c})
            t = time.perf_counter()
            x = 0
            for i in range(1_000_000):
                x += i
            out[c] = round((time.perf_counter() - t) * 1e3, 1)
    except OSError:
        return {}
    finally:
        try:
            os.sched_setaffinity(0, mine)
        except OSError:
            pass
    return out


# The vCPUs' loop times differing by more than this: the pair rows ran on unequal CPUs.
CPU_SPEED_SPREAD = 1.3

# Before a pair, how long the harness waits at most for the two vCPUs to run within
# CPU_SPEED_SPREAD of each other, per pair and in all of one run (full set; --quick and
# --smoke wait less). On this machine one vCPU was slowed for stretches of seconds to minutes
# (cpu_loop_ms 0.15-0.17 s against 0.11 s, then even again 10 s later), and the pairs run in
# such a stretch decided the small-frame targets (docs/bench.md, "Seven pairs at every size").
EVEN_CPUS_WAIT_S = 10.0
EVEN_CPUS_BUDGET_S = 90.0


def uneven(ms):
    """True when the reading `ms` ({cpu: ms}) has one CPU over CPU_SPEED_SPREAD slower."""
    return len(ms) >= 2 and min(ms.values()) > 0 and max(ms.values()) > CPU_SPEED_SPREAD * min(ms.values())


def even_cpu_loop_ms(budget):
    """cpu_loop_ms(), read again every half second while the two CPUs run unevenly, for at most
    EVEN_CPUS_WAIT_S and what is left of `budget` (a one-item list of seconds, spent here).
    Returns (the last reading, seconds waited)."""
    ms = cpu_loop_ms()
    t0 = time.monotonic()
    waited = 0.0
    while uneven(ms) and waited + 0.5 <= min(EVEN_CPUS_WAIT_S, budget[0]):
        time.sleep(0.5)
        ms = cpu_loop_ms()
        waited = time.monotonic() - t0
    budget[0] = max(0.0, budget[0] - waited)
    return ms, round(waited, 1)


def fmt_cpu_ms(ms):
    """cpu_loop_ms()'s figures as text: "cpu0 18.3 ms, cpu1 22.0 ms"."""
    return ", ".join(f"cpu{c} {v:.1f} ms" for c, v in sorted(ms.items()))


def cpu_speed_note(when, ms):
    """A note when the CPUs ran cpu_loop_ms()'s loop at different speeds, else None."""
    if not uneven(ms):
        return None
    return (f"the CPUs ran the same loop at different speeds {when} ({fmt_cpu_ms(ms)}): each "
            f"pair's figure depends on where its ends ran")


def median_row(reps):
    """The median of a case's repeats (by msgs/s), with how many there were and the slowest and
    fastest of them, so a reader can tell a gap from the spread between runs."""
    ordered = sorted(reps, key=lambda r: r["msgs_per_s"])
    row = ordered[len(ordered) // 2]
    row["runs"] = len(ordered)
    row["min_msgs_per_s"], row["max_msgs_per_s"] = ordered[0]["msgs_per_s"], ordered[-1]["msgs_per_s"]
    # Every repeat's figure in the order they ran, and where a pinned one ran, for ratios of
    # paired repeats (paired_ratio).
    row["rep_msgs_per_s"] = [r["msgs_per_s"] for r in reps]
    if any("cpus" in r for r in reps):
        row["rep_cpus"] = [r.get("cpus") for r in reps]
    row.pop("cpus", None)  # one repeat's placement: rep_cpus has every repeat's
    return row


class Skip(Exception):
    """A run that cannot happen here (missing peer, missing subcommand): noted, not fatal."""


class Proc:
    """A child process whose stdout lines are collected by a thread (unless raw=True)."""

    def __init__(self, args, name, logdir, stdin=None, raw_stdout=False, cpu=None):
        self.name = name
        self.args = [str(a) for a in args]
        self.err_path = os.path.join(logdir, f"{name}.stderr")
        self.err = open(self.err_path, "wb")

        def setup():
            raise_nofile()
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
        self.p = subprocess.Popen(self.args, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=self.err,
                                  preexec_fn=setup)
        self.lines = queue.Queue()
        self.all_lines = []
        self.cpu = None  # (user s, system s), once wait() has reaped it
        self.eof = threading.Event()
        if not raw_stdout:
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.all_lines.append(line)
            self.lines.put(line)
        self.lines.put(None)
        self.eof.set()

    def wait_line(self, pattern, timeout):
        """The first stdout line matching `pattern` (a regex); raises on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no line matching {pattern!r} in {timeout:.0f}s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.p.wait()}) before {pattern!r}: "
                                   f"{self.stderr_tail()}")
            m = re.search(pattern, line)
            if m:
                return m

    def wait(self, timeout):
        """The exit code, once the process has exited (TimeoutError after `timeout` s). Reaped
        with wait4(), so self.cpu holds its user and system CPU seconds."""
        if self.p.returncode is not None:
            return self.p.returncode
        # Polled with a growing pause, as Popen.wait(timeout) does, but through wait4(): it
        # also returns the process's resource usage.
        deadline = time.monotonic() + max(timeout, 0.1)
        pause = 0.001
        while True:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: still running after {timeout:.0f}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = (ru.ru_utime, ru.ru_stime)
        return self.p.returncode

    def result(self):
        for line in reversed(self.all_lines):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{self.name}: no result line; stderr: {self.stderr_tail()}")

    def stderr_tail(self):
        self.err.flush()
        try:
            with open(self.err_path, "rb") as f:
                return f.read()[-400:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self.err.close()


class Runner:
    def __init__(self, args):
        self.a = args
        self.bin = args.bin_dir
        self.out = args.out
        self.logdir = os.path.join(self.out, "logs")
        self.samples = os.path.join(self.out, "samples")
        os.makedirs(self.logdir, exist_ok=True)
        os.makedirs(self.samples, exist_ok=True)
        self.results = []
        self.notes = []
        self.even_cpus_budget = [args.even_cpus_budget]  # seconds left (even_cpu_loop_ms)
        self.procs = []
        self.seq = 0
        here = os.path.dirname(os.path.abspath(__file__))
        self.tutorial = os.path.join(here, "peers", "tutorial.py")
        self.have_zmq = os.path.exists(self.peer("bench_zmq"))
        if not self.have_zmq:
            self.note("zeromq: bench_zmq not built (libzmq/cppzmq missing): ZeroMQ rows skipped")
        self.serve_bin = args.framecast_serve or args.framecast
        self.connect_bin = args.framecast_connect or args.framecast
        self.help = {}
        wanted = "framecast-serve" in args.systems.split(",")
        self.fc_serve = wanted and self.has_subcommand(self.serve_bin, "serve")
        self.fc_connect = wanted and self.has_subcommand(self.connect_bin, "connect")
        self.fc_send = wanted and self.has_subcommand(self.connect_bin, "send")

    # --- plumbing -------------------------------------------------------------------------

    def peer(self, name):
        return os.path.join(self.bin, name)

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)
            log("note: " + text)

    def has_subcommand(self, binary, sub):
        """True when `binary SUB --help` describes a working subcommand (not the stub)."""
        if not binary or not os.path.exists(binary):
            self.note(f"no framecast binary at {binary}: the framecast-relay/-serve rows are skipped")
            return False
        try:
            r = subprocess.run([binary, sub, "--help"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.note(f"framecast {sub}: {e}")
            return False
        text = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.help[sub] = text
        if r.returncode != 0 or "not implemented" in text:
            self.note(f"{binary} {sub} is missing or a stub: the rows that need it are skipped "
                      f"(they run once the server/client land in this build)")
            return False
        return True

    def relay_buffer(self, stream):
        """Lossless relays, as ZeroMQ's direct rows are (a blocking send into a bounded queue):
        the server's default --client-buffer, and a publisher held while the subscriber's
        queue is over half of it, however long (--backpressure). A serve without
        --backpressure gets room for the whole stream instead. A queue as long as the stream
        measured this host's cost of fresh memory (300 MB of new pages per run: 10-60x the
        page faults of a bounded queue, docs/bench.md), not the relay."""
        if "--backpressure" in self.help.get("serve", ""):
            return ["--backpressure", "1000000"]
        return ["--client-buffer", str(2 * stream + 64 * MiB)]

    def serve_extras(self):
        """Options beyond the CLI contract, passed only when this serve has them: a drain
        timeout as long as a run, so the end of input does not cut off queued deliveries; and
        the exposure limits off (docs/security.md): a benchmark publishes millions of messages
        a second from one client and opens up to 1,000 connections from 127.0.0.1, which the
        defaults rightly treat as a flood."""
        extras = []
        help_text = self.help.get("serve", "")
        if "--drain-timeout" in help_text:
            extras += ["--drain-timeout", str(int(self.a.run_timeout))]
        for opt in ("--max-rate", "--max-rate-bytes", "--max-per-address", "--memory-limit"):
            if opt + " " in help_text or opt + "=" in help_text:
                extras += [opt, "0"]
        return extras

    def start(self, args, name, **kw):
        self.seq += 1
        p = Proc(args, f"{self.seq:03d}-{name}", self.logdir, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            p.stop()
        self.procs = []

    def record(self, row):
        row.setdefault("k", "")
        self.results.append(row)
        desc = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in row.items() if k in ("msgs_per_s", "mb_per_s", "p50_us", "p99_us", "p999_us"))
        log(f"  {row['system']} {row['scenario']} size={row['size']} k={row['k']}: {desc}")

    def guarded(self, what, fn, *args):
        """Runs one measurement; a failure or timeout becomes a note, never the end of the run."""
        try:
            return fn(*args)
        except Skip as e:
            self.note(f"{what.split()[0]} {what.split()[1]}: skipped: {e}")
        except Exception as e:  # noqa: BLE001 - one bad run must not lose the others
            self.note(f"{what}: FAILED: {e}")
        finally:
            self.stop_all()
        return None

    def pair(self, server_args, client_args, name, timeout, result_from="server", extra=None,
             cpus=None):
        """Listening peer, then connecting peer, on the CPUs `cpus` (listener's, connector's) when
        given, else pinned only under --pin fixed; returns the JSON result of `result_from`."""
        if cpus is None and self.a.pin == "fixed":
            cpus = pair_cpus()
        srv = self.start(server_args, name + "-server", cpu=cpus and cpus[0])
        m = srv.wait_line(r"listening on (\S+)", 10)
        cli = self.start(client_args + ["--connect", m.group(1)], name + "-client",
                         cpu=cpus and cpus[1])
        deadline = time.monotonic() + timeout
        who = srv if result_from == "server" else cli
        rc = who.wait(deadline - time.monotonic())
        who.eof.wait(5)  # the pump thread collects the last line just after exit
        if rc != 0:
            raise RuntimeError(f"{who.name} exited {rc}: {who.stderr_tail()}")
        row = who.result()
        if result_from == "server":
            # A throughput pair (the server receives): each end's CPU, user and system. It
            # says which end was busy, and how much was framing (user) rather than the
            # kernel's TCP (system). The sender exits once the receiver has closed; one that
            # does not within 5 s is left without figures, and a note says so.
            try:
                cli.wait(5)
            except TimeoutError:
                self.note(f"{cli.name}: still running 5 s after the receiver's result: no CPU figures")
            for end, p in (("recv", srv), ("send", cli)):
                if p.cpu:
                    row[f"{end}_user_s"], row[f"{end}_sys_s"] = round(p.cpu[0], 4), round(p.cpu[1], 4)
        if extra:
            row.update(extra)
        if cpus:
            row["cpus"] = f"recv cpu{cpus[0]}, send cpu{cpus[1]}"
        return row

    # --- counts -----------------------------------------------------------------------------

    def thr_count(self, system, size):
        a = self.a
        if system == "tutorial-python":
            return max(2, min(a.max_msgs // 20, a.bytes_budget // 100 // size))
        if system in ("ceiling", "framecast-direct", "zeromq"):
            # The direct pairs move 16 B frames at 50-120 M/s: 3 M of them were 30-60 ms, short
            # enough for start-up and placement to move the row by 0.3x. Half a second at least.
            return max(2, min(a.direct_msgs, a.bytes_budget // size))
        return max(2, min(a.max_msgs, a.bytes_budget // size))

    # --- scenario 1: throughput, one connection -----------------------------------------------

    THR = {
        "ceiling": ("bench_ceiling", "recv", "send"),
        "framecast-direct": ("bench_framecast_direct", "recv", "send"),
        "zeromq": ("bench_zmq", "pull", "push"),
        "tutorial-python": (None, "recv", "send"),
    }

    def cmd(self, system, binary):
        if system == "tutorial-python":
            return [sys.executable, self.tutorial]
        if system == "zeromq" and not self.have_zmq:
            raise Skip("ZeroMQ peers not built")
        return [self.peer(binary)]

    def alternated(self, systems, what, once, skip=None, repeat=None, before=None):
        """Each system's runs, `repeat` (default --repeat) times, alternated (ceiling,
        framecast-direct, zeromq, ceiling, ...): this machine's speed for a pair has fast and
        slow stretches that can outlast a system's repeats, so run back to back one system's
        median could come from a fast stretch and the next system's from a slow one
        (docs/bench.md, "Throughput repeats alternate", "The fan-out subscriber").
        `once(system, i)` is repeat i; `skip(i, system)` leaves out repeat i; `before(i)` runs
        before repeat i, unless no system runs in it. A system that raised Skip or failed
        (noted once, as `what(system)`) runs no more. Returns {system: [result, ...]}."""
        reps = {s: [] for s in systems}
        live = list(systems)
        for i in range(repeat or self.a.repeat):
            runs = [s for s in live if not (skip and skip(i, s))]
            if runs and before:
                before(i)
            for s in runs:
                r = self.guarded(what(s), once, s, i)
                if r is None:
                    live.remove(s)
                else:
                    reps[s].append(r)
        return reps

    # Throughput systems that no paired target reads: they run --repeat times, not
    # --paired-repeat (ZeroMQ took 6-11 s a run at 16 B and 100 B, the tutorial's Python more).
    UNPAIRED = ("zeromq", "tutorial-python")

    def throughput_all(self, systems, size):
        """Every direct system's runs at one size, alternated; the median of each is kept.
        The ceiling and framecast-direct run --paired-repeat pairs (the UNPAIRED systems
        --repeat runs), each after a reading of the two CPUs' speeds (rep_cpu_loop_ms): a pair
        takes one to three seconds, and the vCPUs' speeds move within minutes by more than the
        gap the 16 B, 100 B and 1 MiB targets measure (docs/bench.md, "A header read sixteen
        bytes at a time, and more pairs at small frames"; "Seven pairs at every size")."""
        speeds, waits = {}, {}  # by repeat

        def before(i):
            speeds[i], waits[i] = even_cpu_loop_ms(self.even_cpus_budget)

        def skip(i, s):
            return i >= (self.a.repeat if s in self.UNPAIRED else self.a.paired_repeat)

        n = max(self.a.paired_repeat, self.a.repeat)
        reps = self.alternated(systems, lambda s: f"throughput {s} {size}",
                               lambda s, i: self.throughput_once(s, size, i),
                               skip=skip, repeat=n, before=before)
        if any(waits.values()):
            still = sum(1 for i, w in waits.items() if w and uneven(speeds[i]))
            self.note(f"throughput {fmt_size(size)}: waited {sum(waits.values()):.1f} s in all before "
                      f"{sum(1 for w in waits.values() if w)} of {len(waits)} repeats for the two vCPUs "
                      f"to run within {CPU_SPEED_SPREAD}x of each other's speed"
                      + (f"; {still} ran without" if still else "")
                      + ("; the run's wait is spent" if self.even_cpus_budget[0] < 0.5 else ""))
        for s in systems:
            ran = [i for i in range(n) if not skip(i, s) and i in speeds]
            if reps[s]:
                row = median_row(reps[s])
                if s not in self.UNPAIRED and len(reps[s]) == len(ran):
                    row["rep_cpu_loop_ms"] = [{f"cpu{c}": v for c, v in sorted(speeds[i].items())} for i in ran]
                    row["rep_cpu_wait_s"] = [waits[i] for i in ran]
                self.record(row)

    def throughput_once(self, system, size, i):
        binary, srv_mode, cli_mode = self.THR[system]
        base = self.cmd(system, binary)
        opts = ["--size", size, "--count", self.thr_count(system, size)]
        return self.pair(base + [srv_mode, "--listen", "127.0.0.1:0"] + opts,
                         base + [cli_mode] + opts, f"thr-{system}-{size}", self.a.run_timeout,
                         cpus=self.repeat_cpus(i))

    # The size whose relay rows have a target against ZeroMQ direct (targets()).
    RELAY_TARGET_SIZE = 100

    def relays(self, size, feeders, zeromq):
        """stdin lines (or `framecast send`) -> framecast serve -> framecast connect, --repeat
        times each, alternated; the median run of each is kept. At RELAY_TARGET_SIZE, with
        `zeromq`, every round also runs ZeroMQ direct, the target's other side, each round after
        the wait for even vCPUs: ZeroMQ's throughput row ran minutes before, and in one run
        (session 25) a slowed vCPU from then on took the relays to 0.6x their figure in the
        other runs, ZeroMQ's row not. Each relay row then keeps those ZeroMQ runs
        (rep_zeromq_msgs_per_s), and the target reads relay repeat i over ZeroMQ repeat i."""
        beside = zeromq and size == self.RELAY_TARGET_SIZE
        systems = (["zeromq"] if beside else []) + list(feeders)

        def once(s, i):
            if s == "zeromq":
                return self.throughput_once("zeromq", size, i)
            return self.relay_once(size, s)

        reps = self.alternated(systems, lambda s: f"relay {s} {size}", once,
                               before=(lambda i: even_cpu_loop_ms(self.even_cpus_budget)) if beside else None)
        for feeder in feeders:
            if reps[feeder]:
                row = median_row(reps[feeder])
                if beside and len(reps["zeromq"]) == len(reps[feeder]):
                    row["rep_zeromq_msgs_per_s"] = [r["msgs_per_s"] for r in reps["zeromq"]]
                self.record(row)

    def relay_once(self, size, feeder):
        if not (self.fc_serve and self.fc_connect) or (feeder == "send" and not self.fc_send):
            raise Skip("needs framecast serve/connect" + ("/send" if feeder == "send" else ""))
        count = self.thr_count("framecast-relay", size)
        stream = count * (size + HEADER)
        welcome = "bench-ready"
        serve_args = [self.serve_bin, "serve", "--listen", "127.0.0.1:0", "--welcome", welcome,
                      "--max-message", str(max(size, MiB))] + self.relay_buffer(stream) + self.serve_extras()
        if feeder == "stdin":
            serve_args += ["--source", "stdin"]
            srv = self.start(serve_args, f"relay-serve-{size}", stdin=subprocess.PIPE)
        else:
            serve_args += ["--publish"]
            srv = self.start(serve_args, f"relay-serve-{size}")
        addr = srv.wait_line(r"listening on (\S+)", 10).group(1)
        conn = self.start([self.connect_bin, "connect", addr, "--count", count + 1, "--output", "lines",
                           "--max-message", str(max(size, MiB))],
                          f"relay-connect-{size}", raw_stdout=True)
        # The welcome reaches our pipe once connect goes quiet (it flushes when a read would
        # block), and means the server has registered the client: only then start the feed.
        first = self.read_welcome(conn, welcome, 10)
        counter = {"bytes": len(first)}
        drain = threading.Thread(target=self.splice_drain, args=(conn.p.stdout, counter), daemon=True)
        drain.start()
        src_args = [self.peer("bench_fanout_sub"), "source", "--size", size, "--count", count]
        t0 = time.monotonic()
        if feeder == "stdin":
            src = subprocess.Popen([str(a) for a in src_args], stdout=srv.p.stdin)
            srv.p.stdin.close()  # serve sees end of input when the source exits
        else:
            src = subprocess.Popen([str(a) for a in src_args], stdout=subprocess.PIPE)
            sender = self.start([self.connect_bin, "send", addr], f"relay-send-{size}", stdin=src.stdout)
            src.stdout.close()
        try:
            rc = conn.wait(self.a.run_timeout)
        finally:
            if src.poll() is None:
                src.kill()
            src.wait()
        drain.join(5)
        if rc != 0:
            raise RuntimeError(f"framecast connect exited {rc}: {conn.stderr_tail()}")
        if "eof_at" not in counter:
            raise RuntimeError("the reader of connect's output did not see its end within 5 s")
        expect = len(first) + count * (size + 1)
        # Until connect's last byte reached the drain (the end of its output, an event), not
        # until the harness saw it exit: wait() polls with pauses of up to 50 ms, and the 100 B
        # relay's runs came out as 0.518 s again and again (docs/bench.md, "The relay at 1 MiB").
        secs = counter["eof_at"] - t0
        row = {"system": f"framecast-relay-{feeder}", "scenario": "throughput", "size": size,
               "count": count, "seconds": secs, "msgs_per_s": count / secs,
               "mb_per_s": count * size / secs / 1e6, "runs": 1,
               "note": "wall time from feeding stdin to the end of connect's output"}
        if counter["bytes"] != expect:
            raise RuntimeError(f"connect printed {counter['bytes']} of {expect} bytes: "
                               f"{conn.stderr_tail()} / serve: {srv.stderr_tail()}")
        if feeder == "send":
            sender.stop()
        return row

    @staticmethod
    def read_welcome(conn, welcome, timeout):
        fd = conn.p.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or conn.p.poll() is not None:
                raise RuntimeError(f"framecast connect: no welcome line within {timeout}s "
                                   f"(rc={conn.p.poll()}): {conn.stderr_tail()}")
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError("framecast connect: closed before the welcome")
                buf += chunk
        if not buf.startswith(welcome.encode()):
            raise RuntimeError(f"framecast connect: expected the welcome first, got {buf[:40]!r}")
        return buf

    @staticmethod
    def splice_drain(pipe, counter):
        fd = pipe.fileno()
        with open(os.devnull, "wb") as null:
            while True:
                try:
                    n = os.splice(fd, null.fileno(), 1 << 20)
                except OSError:
                    chunk = os.read(fd, 1 << 20)
                    n = len(chunk)
                if n == 0:
                    counter["eof_at"] = time.monotonic()
                    return
                counter["bytes"] += n

    # --- scenario 3: ping-pong ----------------------------------------------------------------

    PING = {
        "ceiling": ("bench_ceiling", "echo", "ping"),
        "framecast-direct": ("bench_framecast_direct", "echo", "ping"),
        "zeromq": ("bench_zmq", "rep", "req"),
        "tutorial-python": (None, "echo", "ping"),
    }

    def pingpong(self, system, size=100):
        binary, srv_mode, cli_mode = self.PING[system]
        base = self.cmd(system, binary)
        count = self.a.ping_count // (5 if system == "tutorial-python" else 1)
        samples = os.path.join(self.samples, f"pingpong-{system}.txt")
        opts = ["--size", size, "--count", count, "--warmup", max(10, count // 10), "--samples", samples]
        row = self.pair(base + [srv_mode, "--listen", "127.0.0.1:0"], base + [cli_mode] + opts,
                        f"ping-{system}", self.a.run_timeout, result_from="client")
        row["samples"] = os.path.relpath(samples, self.out)
        self.record(row)

    # --- scenario 2: fan-out ------------------------------------------------------------------

    def fanout_counts(self, k):
        sat = max(self.a.fanout_min, self.a.fanout_deliveries // k)
        rate = min(10000.0, self.a.fanout_paced_deliveries / k)
        paced = max(self.a.fanout_min_lat, int(rate * self.a.fanout_lat_seconds))
        return sat, rate, paced

    def fanout_all(self, systems, k):
        """Every system's saturated runs at one K, --repeat times, alternated (ceiling,
        framecast-serve, zeromq, ceiling, ...); the median of each is kept, then each system's
        paced run gives its latency. From K = 100 up one subscriber process is the busy end of
        every row, and its speed has a fast and a slow mode that can outlast a system's repeats:
        run back to back, one system's median could come from one mode and the next system's
        from the other (docs/bench.md, "The fan-out subscriber"). ZeroMQ, 15x slower at
        K = 10,000 (~40 s a run), runs once there."""
        sat = self.fanout_counts(k)[0]
        reps = self.alternated(systems, lambda s: f"fanout {s} K={k}",
                               lambda s, i: self.fanout_once(s, k, sat, 0, self.fanout_cpus(s, k, i)),
                               skip=lambda i, s: i > 0 and k > 1000 and s == "zeromq")
        for s in systems:
            if reps[s]:
                self.guarded(f"fanout {s} K={k}", self.fanout_finish, s, k, reps[s])

    def repeat_cpus(self, i):
        """The CPUs of repeat i of a throughput pair (receiver's, sender's) or a saturated fan-out
        run (subscribers', publisher's): placement(i) under --pin alternate, always the same under
        --pin fixed, None under --pin no."""
        if self.a.pin == "no":
            return None
        return pair_cpus() if self.a.pin == "fixed" else placement(i)

    def fanout_cpus(self, system, k, i):
        """repeat_cpus(i) from K = FANOUT_PIN_FROM up, but for ZeroMQ; else None.
        - From K = 100 up the subscriber process is the busy end, and it took 1.1-1.6x the CPU
          on the slower vCPU (by hand, K = 10,000, both publishers): unpinned, the vCPU it
          landed on was part of the "fast and slow mode" that made framecast-serve beat the
          ceiling in some runs (docs/bench.md, "Fan-out pinned").
        - ZeroMQ stays where the scheduler puts it: its subscriber side is libzmq's I/O thread
          and the application's, and pinned to one CPU it ran at 0.7-0.8x of its unpinned
          figure at K = 100 and 1,000, so the ratios to it are taken against its better
          placement.
        - Below K = 100 the publishing side is the busy end. Pinned, framecast serve shares its
          CPU with its stdin thread and its source process, which the one-threaded ceiling
          does not: at K = 1 serve ran at 3.8-5.5 M deliveries/s pinned against 7.1-7.3 M
          unpinned, the ceiling at 9.1-10.0 M and 9.6-9.8 M (docs/bench.md, "Fan-out
          pinned")."""
        return None if system == "zeromq" or k < FANOUT_PIN_FROM else self.repeat_cpus(i)

    def fanout_finish(self, system, k, reps):
        _, rate, paced = self.fanout_counts(k)
        row = median_row(reps)
        lat = self.fanout_once(system, k, paced, rate)
        row["p50_us"], row["p99_us"] = lat["p50_us"], lat["p99_us"]
        row["paced_rate"] = rate
        row["saturated_p50_us"], row["saturated_p99_us"] = row.pop("sat_p50_us"), row.pop("sat_p99_us")
        for r in (row, lat):
            if r["note"]:
                self.note(f"fanout {system} K={k}: {r['note']} ({'paced' if r is lat else 'saturated'})")
        self.record(row)

    def fanout_once(self, system, k, count, rate, cpus=None):
        """One fan-out run; with `cpus` (subscribers', publisher's) every subscriber process runs
        on the first and the publishing side (the publisher, or serve and its source) on the
        second."""
        size = 100
        sub_cpu, pub_cpu = cpus if cpus else (None, None)
        label = f"fanout-{system}-k{k}-{'paced' if rate else 'sat'}"
        out = os.path.join(self.samples, f"{label}.txt")
        timeout = self.a.run_timeout + (count / rate if rate else 0)
        sub_common = ["--k", k, "--size", size, "--count", count, "--deadline-s", int(timeout),
                      "--idle-ms", self.a.idle_ms]
        welcome = False
        if system == "ceiling":
            # The same start as framecast-serve's: a welcome frame to each subscriber, and the
            # first message only once every subscriber has its welcome (a line on stdin). Started
            # while the subscriber process was still opening connections, the same publisher
            # cost that process 1.2-1.3x the CPU per delivery (docs/bench.md, "The fan-out
            # subscriber").
            srv = self.start([self.peer("bench_ceiling"), "pub", "--listen", "127.0.0.1:0", "--k", k,
                              "--size", size, "--count", count, "--rate", rate, "--welcome", 1],
                             label + "-pub", stdin=subprocess.PIPE, cpu=pub_cpu)
            welcome = True
        elif system == "zeromq":
            if not self.have_zmq:
                raise Skip("ZeroMQ peers not built")
            srv = self.start([self.peer("bench_zmq"), "pub", "--listen", "127.0.0.1:0", "--k", k,
                              "--size", size, "--count", count, "--rate", rate], label + "-pub", cpu=pub_cpu)
        elif system == "framecast-serve":
            if not self.fc_serve:
                raise Skip("needs framecast serve")
            stream = count * (size + HEADER)
            srv = self.start([self.serve_bin, "serve", "--listen", "127.0.0.1:0", "--source", "stdin",
                              "--welcome", "bench-ready", "--client-buffer", str(2 * stream + 64 * MiB)]
                             + self.serve_extras(),
                             label + "-serve", stdin=subprocess.PIPE, cpu=pub_cpu)
            welcome = True
        else:
            raise Skip(f"no fan-out peer for {system}")
        addr = srv.wait_line(r"listening on (\S+)", 10).group(1)
        # Subscriber processes: ZeroMQ needs ~2 descriptors per SUB socket, so big K is split.
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        per_fd = 2 if system == "zeromq" else 1
        nproc = max(1, -(-k * per_fd // max(1, nofile - 1000)))
        subs = []
        for i in range(nproc):
            kk = k // nproc + (1 if i < k % nproc else 0)
            args = ([self.peer("bench_zmq"), "subs"] if system == "zeromq"
                    else [self.peer("bench_fanout_sub"), "run", "--system", system,
                          "--welcome", int(welcome)])
            subs.append(self.start(args + ["--connect", addr] + sub_common[:1] + [kk] + sub_common[2:]
                                   + ["--out", f"{out}.{i}"], f"{label}-subs{i}", cpu=sub_cpu))
        for s in subs:
            s.wait_line(r"^ready$", timeout)
        if system == "ceiling":
            try:
                srv.p.stdin.write(b"go\n")
                srv.p.stdin.close()
            except BrokenPipeError:  # a publisher without --welcome may have finished already
                pass
        if system == "framecast-serve":
            src = subprocess.Popen([self.peer("bench_fanout_sub"), "source", "--size", str(size),
                                    "--count", str(count), "--rate", str(rate)], stdout=srv.p.stdin,
                                   preexec_fn=None if pub_cpu is None else lambda: os.sched_setaffinity(0, {pub_cpu}))
            srv.p.stdin.close()
        deadline = time.monotonic() + timeout + 5
        try:
            for s in subs:
                rc = s.wait(deadline - time.monotonic())
                if rc != 0:
                    raise RuntimeError(f"{s.name} exited {rc}: {s.stderr_tail()}")
        finally:
            if system == "framecast-serve" and src.poll() is None:
                src.kill()
                src.wait()
        for s in subs:
            s.eof.wait(5)
        parts = [s.result() for s in subs]
        row = self.merge_fanout(system, k, count, size, rate, parts, [f"{out}.{i}" for i in range(nproc)])
        if cpus:
            row["cpus"] = f"subscribers cpu{sub_cpu}, publisher cpu{pub_cpu}"
        return row

    @staticmethod
    def merge_fanout(system, k, count, size, rate, parts, files):
        delivered = sum(p["delivered"] for p in parts)
        first = min(p["first_ns"] for p in parts if p["delivered"]) if delivered else 0
        last = max(p["last_ns"] for p in parts)
        secs = (last - first) / 1e9 if delivered else 0
        # publish -> last subscriber: the latest of the processes' "last" times per message
        sent, latest, seen = {}, {}, {}
        for path in files:
            with open(path) as f:
                for line in f:
                    seq, t, lt = (int(x) for x in line.split())
                    sent[seq] = t
                    latest[seq] = max(latest.get(seq, 0), lt)
                    seen[seq] = seen.get(seq, 0) + 1
        us = sorted((latest[s] - sent[s]) / 1e3 for s in latest if seen[s] == len(files))

        def pct(p):
            return us[min(int(p / 100 * len(us)), len(us) - 1)] if us else float("nan")
        expected = k * count
        if delivered < expected:
            lost = f"{expected - delivered} of {expected} deliveries missing"
        else:
            lost = ""
        return {"system": system, "scenario": "fanout", "size": size, "k": k, "count": count,
                "delivered": delivered, "expected": expected, "seconds": secs,
                # the subscriber processes' CPU from their first delivery on, summed: near
                # `seconds` times the number of processes when they, not the publisher, are the
                # busy end (ZeroMQ's also counts libzmq's I/O thread)
                "sub_cpu_s": sum(p.get("sub_cpu_s", 0.0) for p in parts),
                "msgs_per_s": delivered / secs if secs > 0 else 0.0,
                "mb_per_s": delivered * size / secs / 1e6 if secs > 0 else 0.0,
                "sat_p50_us": pct(50), "sat_p99_us": pct(99), "p50_us": pct(50), "p99_us": pct(99),
                "rate": rate, "note": lost}

    # --- scenario 4: idle connections ---------------------------------------------------------

    def zmq_connections(self, n):
        """For context: an XPUB's RSS growth per idle SUB connection."""
        if not self.have_zmq:
            raise Skip("ZeroMQ peers not built")
        pub = self.start([self.peer("bench_zmq"), "pub", "--listen", "127.0.0.1:0", "--k", n + 1,
                          "--count", 1], "conns-zmq-pub")  # waits for one subscription too many
        addr = pub.wait_line(r"listening on (\S+)", 10).group(1)
        time.sleep(0.2)
        before = rss_kib(pub.p.pid)
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nproc = max(1, -(-n * 2 // max(1, nofile - 1000)))
        subs = [self.start([self.peer("bench_zmq"), "subs", "--connect", addr,
                            "--k", n // nproc + (1 if i < n % nproc else 0), "--count", 1,
                            "--deadline-s", int(self.a.run_timeout)], f"conns-zmq-subs{i}")
                for i in range(nproc)]
        for s in subs:
            s.wait_line(r"^ready$", self.a.run_timeout)
        time.sleep(1.0 + n / 5000)  # connections are made by ZeroMQ's I/O threads, after "ready"
        after = rss_kib(pub.p.pid)
        self.record({"system": "zeromq", "scenario": "connections", "size": 0, "k": n,
                     "held": None, "rss_before_kib": before, "rss_after_kib": after,
                     "rss_per_conn_bytes": (after - before) * 1024 / max(1, n),
                     "msgs_per_s": 0.0, "mb_per_s": 0.0,
                     "note": "XPUB process, connections not individually verified"})

    def connections(self, n):
        if not self.fc_serve:
            raise Skip("needs framecast serve")
        srv = self.start([self.serve_bin, "serve", "--listen", "127.0.0.1:0", "--publish",
                          "--welcome", ""] + self.serve_extras(), "conns-serve")
        host, port = srv.wait_line(r"listening on (\S+):(\d+)", 10).groups()
        time.sleep(0.2)
        before = rss_kib(srv.p.pid)
        socks = []
        try:
            for _ in range(n):
                socks.append(socket.create_connection((host, int(port)), timeout=10))
            time.sleep(1.0)
            after = rss_kib(srv.p.pid)
            alive = 0
            for s in socks:
                s.setblocking(False)
                try:
                    alive += 1 if s.recv(1) != b"" else 0
                except BlockingIOError:
                    alive += 1
        finally:
            for s in socks:
                s.close()
        self.record({"system": "framecast-serve", "scenario": "connections", "size": 0, "k": n,
                     "held": alive, "rss_before_kib": before, "rss_after_kib": after,
                     "rss_per_conn_bytes": (after - before) * 1024 / max(1, n),
                     "msgs_per_s": 0.0, "mb_per_s": 0.0})


# --- output ---------------------------------------------------------------------------------

def ratio_rows(results):
    """Adds ratio_to_framecast: msgs/s over the reference framecast row of the same case."""
    ref = {}
    for r in results:
        if r["system"] == REFERENCE.get(r["scenario"]):
            ref[(r["scenario"], r["size"], r["k"])] = r
    for r in results:
        base = ref.get((r["scenario"], r["size"], r["k"]))
        if base and base.get("msgs_per_s"):
            r["ratio_to_framecast"] = r["msgs_per_s"] / base["msgs_per_s"]
        else:
            r["ratio_to_framecast"] = None


def fmt_size(n):
    if n == "" or n is None:
        return ""
    n = int(n)
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


def fmt_num(v, digits=3):
    """3 significant digits, k/M/G suffixes: 11.7 M, 774 k, 2.22 k, 42.1."""
    if v is None or v == "" or (isinstance(v, float) and v != v):
        return "-"
    v = float(v)
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return f"{v / div:.{digits}g}{suffix}"
    return f"{v:.{digits}g}"


COLUMNS = [("system", "system"), ("scenario", "scenario"), ("size", "size"), ("k", "K"),
           ("msgs_per_s", "msgs/s"), ("mb_per_s", "MB/s"), ("p50_us", "p50 us"), ("p99_us", "p99 us"),
           ("p999_us", "p99.9 us"), ("ratio_to_framecast", "ratio to framecast")]


def table(results):
    rows = []
    for r in results:
        rows.append([r["system"], r["scenario"], fmt_size(r["size"]) if r["scenario"] != "connections" else "",
                     str(r.get("k", "")),
                     fmt_num(r.get("msgs_per_s")) if r["scenario"] != "connections"
                     else "-" if r.get("held") is None else f"{r['held']} held",
                     fmt_num(r.get("mb_per_s")) if r["scenario"] != "connections"
                     else f"{r['rss_per_conn_bytes']:.0f} B/conn RSS",
                     fmt_num(r.get("p50_us")), fmt_num(r.get("p99_us")), fmt_num(r.get("p999_us")),
                     "-" if r.get("ratio_to_framecast") is None else f"{r['ratio_to_framecast']:.2f}x"])
    head = [h for _, h in COLUMNS]
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) if rows else len(head[i])
              for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def find(results, system, scenario, size=None, k=""):
    for r in results:
        if r["system"] == system and r["scenario"] == scenario and (size is None or r["size"] == size) \
                and (k == "" or r["k"] == k):
            return r
    return None


def targets(results):
    """The issue's targets as ratios measured in this run (figures, not pass/fail tests)."""
    out = []

    def ratio(a, b, key="msgs_per_s"):
        if a and b and b.get(key):
            return a[key] / b[key]
        return None

    def line(text, value, goal, higher=True):
        if value is None:
            out.append(f"  {text}: not measured")
        elif goal is None:
            out.append(f"  {text}: {value:.2f}x (for context)")
        else:
            ok = value >= goal if higher else value <= goal
            out.append(f"  {text}: {value:.2f}x (target {'>=' if higher else '<='} {goal}x) "
                       f"{'met' if ok else 'SHORT'}")

    zmq100 = find(results, "zeromq", "throughput", 100)
    direct100 = find(results, "framecast-direct", "throughput", 100)
    line("100 B direct vs ZeroMQ msgs/s", ratio(direct100, zmq100), 3)

    def direct_vs_ceiling(size, goal, unit):
        direct = find(results, "framecast-direct", "throughput", size)
        ceil = find(results, "ceiling", "throughput", size)
        text = f"{fmt_size(size)} direct vs ceiling {unit}"
        paired = paired_ratio(direct, ceil)
        if paired is None:
            line(text, ratio(direct, ceil), goal)
            out[-1] += short_spread_context(direct, ceil, goal)
        else:
            value, lo, hi, n = paired
            line(text, value, goal)
            out[-1] += (f"; the median of {n} paired repeats ({lo:.2f}x-{hi:.2f}x), each pair run back "
                        f"to back on the same CPUs; the ratio of the medians {ratio(direct, ceil):.2f}x")
            out[-1] += unequal_cpus_context(direct, ceil)

    direct_vs_ceiling(16, 0.8, "msgs/s")
    direct_vs_ceiling(100, 0.8, "msgs/s")
    for size in (16, 100):
        cpu = [cpu_ns(find(results, s, "throughput", size)) for s in ("framecast-direct", "ceiling")]
        if None not in cpu:
            out.append(f"  {size} B CPU per message, sender + receiver, user + system: framecast-direct "
                       f"{cpu[0][0]:.1f} + {cpu[0][1]:.1f} ns, ceiling {cpu[1][0]:.1f} + {cpu[1][1]:.1f} ns "
                       f"(for context: user time is the framing's own cost)")
    for feeder in ("stdin", "send"):
        relay = find(results, f"framecast-relay-{feeder}", "throughput", 100)
        text = f"100 B relay ({feeder}) vs ZeroMQ direct msgs/s"
        a, b = (relay or {}).get("rep_msgs_per_s"), (relay or {}).get("rep_zeromq_msgs_per_s")
        if a and b and len(a) == len(b) and all(b):
            q = sorted(x / y for x, y in zip(a, b))
            line(text, q[len(q) // 2], 1)
            out[-1] += (f"; the median of {len(q)} round{'s' if len(q) != 1 else ''} ({q[0]:.2f}x-{q[-1]:.2f}x), each relay run beside "
                        f"a ZeroMQ run in the same round")
            if (row := ratio(relay, zmq100)) is not None:
                out[-1] += f"; against ZeroMQ's throughput row {row:.2f}x"
        else:
            line(text, ratio(relay, zmq100), 1)
    direct_vs_ceiling(MiB, 0.9, "MB/s")
    line("1 MiB ZeroMQ vs ceiling MB/s", ratio(find(results, "zeromq", "throughput", MiB),
                                             find(results, "ceiling", "throughput", MiB), "mb_per_s"), None)
    for k in (100, 1000):
        line(f"fan-out K={k} framecast-serve vs ZeroMQ delivered msgs/s",
             ratio(find(results, "framecast-serve", "fanout", k=k), find(results, "zeromq", "fanout", k=k)), 2)
        line(f"fan-out K={k} ceiling vs ZeroMQ delivered msgs/s",
             ratio(find(results, "ceiling", "fanout", k=k), find(results, "zeromq", "fanout", k=k)), None)
    zp = find(results, "zeromq", "pingpong")
    dp = find(results, "framecast-direct", "pingpong")
    line("ping-pong p99 framecast-direct / ZeroMQ", ratio(dp, zp, "p99_us"), 1, higher=False)
    out.extend(ceiling_warnings(results))
    return "\n".join(out)


def short_spread_context(r, c, goal):
    """For a ratio target to the ceiling that a run's medians missed: whether the repeats
    missed it too. On the 2-vCPU machines here one pair's repeats spread by up to 2x at 16 B
    (docs/bench.md, "The sender's copy and the machine's speed"), so a median short of the goal
    can come from one slow stretch. Within the spread: the row's fastest repeat reached the goal
    against the ceiling's slowest. The label stays SHORT either way."""
    if not (r and c and r.get("msgs_per_s") and c.get("msgs_per_s")) or r["msgs_per_s"] >= goal * c["msgs_per_s"]:
        return ""
    hi, lo = r.get("max_msgs_per_s"), c.get("min_msgs_per_s")
    if hi is None or lo is None:
        return ""
    verdict = "within the spread of the repeats" if hi >= goal * lo else "short in every repeat"
    return f"; {verdict} ({r['system']} {spread(r)}, ceiling {spread(c)} msgs/s)"


def paired_ratio(r, c):
    """(median, lowest, highest, pairs) of r's repeats over c's, repeat i over repeat i, or None
    unless both rows ran the same number of repeats, pinned, each pair on the same CPUs
    (rep_cpus). Repeat i of every system runs back to back with the others'
    (Runner.alternated) in the same placement, so a pair shares the machine's state: the vCPUs'
    speeds here moved by 1.7x within minutes, more than the gap the target measures
    (docs/bench.md, "Paired repeats"). The median is median_row's (the upper one of an even
    count)."""
    r, c = r or {}, c or {}
    a, b = r.get("rep_msgs_per_s"), c.get("rep_msgs_per_s")
    if not a or not b or len(a) != len(b) or len(a) < 2 or not all(b):
        return None
    where = r.get("rep_cpus")
    if not where or where != c.get("rep_cpus") or None in where:
        return None
    q = sorted(x / y for x, y in zip(a, b))
    return q[len(q) // 2], q[0], q[-1], len(q)


def unequal_cpus_context(r, c):
    """For a paired target: which pairs ran while one vCPU was over
    CPU_SPEED_SPREAD slower than the other (rep_cpu_loop_ms, read before each pair), with their
    ratios, and the median of the rest. For context: the target reads every pair."""
    speeds = r.get("rep_cpu_loop_ms")
    a, b = r.get("rep_msgs_per_s") or [], c.get("rep_msgs_per_s") or []
    if not speeds or speeds != c.get("rep_cpu_loop_ms") or len(speeds) != len(a) or len(a) != len(b):
        return ""
    if not all(len(ms) >= 2 and min(ms.values()) > 0 for ms in speeds) or not all(b):
        return ""  # a reading failed (no two CPUs of ours): nothing to say
    q = [x / y for x, y in zip(a, b)]
    slow = [i for i, ms in enumerate(speeds) if uneven(ms)]
    if not slow:
        return f"; every pair ran with the two vCPUs within {CPU_SPEED_SPREAD}x of each other's speed"
    rest = sorted(q[i] for i in range(len(q)) if i not in slow)
    text = (f"; {len(slow)} of {len(q)} pairs ran with one vCPU over {CPU_SPEED_SPREAD}x slower "
            f"({', '.join(f'{q[i]:.2f}x' for i in slow)})")
    if rest:
        text += f", the median of the other {len(rest)} {rest[len(rest) // 2]:.2f}x"
    return text


def cpu_ns(row):
    """(user, system) CPU per message of a throughput pair, sender + receiver, in ns; None
    without the figures."""
    keys = ("send_user_s", "recv_user_s", "send_sys_s", "recv_sys_s")
    if not row or not row.get("count") or any(row.get(k) is None for k in keys):
        return None
    n = row["count"]
    return ((row["send_user_s"] + row["recv_user_s"]) * 1e9 / n,
            (row["send_sys_s"] + row["recv_sys_s"]) * 1e9 / n)


# A ceiling beaten by more than this, and by more than the spread of the two rows' repeats, is
# not a ceiling. On the 2-vCPU machines here one pair's runs spread by up to 1.6x (docs/bench.md,
# "Throughput repeats alternate"), so the median alone cannot tell a gap from noise.
CEILING_NOISE = 1.10


def ceiling_warnings(results):
    """A warning for each throughput or fan-out row that beats the ceiling of its size (and, in
    fan-out, its subscriber count) by more than noise: its median by more than CEILING_NOISE,
    and its slowest repeat faster than the ceiling's fastest. A median over CEILING_NOISE whose
    repeats overlap the ceiling's gets a note saying so, with both spreads."""
    out = []
    for r in results:
        if r["scenario"] not in ("throughput", "fanout") or r["system"] == "ceiling":
            continue
        k = r.get("k", "")  # "" in throughput rows: find() then matches any
        c = find(results, "ceiling", r["scenario"], r["size"], k)
        if not (c and c.get("msgs_per_s") and r.get("msgs_per_s", 0) > CEILING_NOISE * c["msgs_per_s"]):
            continue
        where = fmt_size(r["size"]) + (f", K = {k}" if k != "" else "")
        ratio = r["msgs_per_s"] / c["msgs_per_s"]
        lo, hi = r.get("min_msgs_per_s"), c.get("max_msgs_per_s")
        if lo is not None and hi is not None and lo <= hi:
            out.append(f"  note: {r['system']} at {where} is {ratio:.2f}x the ceiling's median, within "
                       f"the spread of the repeats ({r['system']} {spread(r)}, ceiling {spread(c)} msgs/s)"
                       + sub_cpu_context(r, c))
        else:
            out.append(f"  warning: {r['system']} at {where} beats the ceiling "
                       f"({ratio:.2f}x): the ceiling is not one here" + sub_cpu_context(r, c))
    return out


def sub_cpu_context(r, c):
    """In fan-out, the subscriber process (the same code for both publishers, and from K = 100
    up the busy end) and its CPU per delivery in each median run: when the ceiling's figure is
    the higher one, its run was slow at the subscriber's end (docs/bench.md, "The relay at
    1 MiB"). Not for ZeroMQ, whose subscribers are another program."""
    def per(row):
        return row["sub_cpu_s"] * 1e9 / row["delivered"] if row.get("sub_cpu_s") and row.get("delivered") else None
    x, y = per(r), per(c)
    if r["system"] != "framecast-serve" or x is None or y is None:  # ZeroMQ's are bench_zmq's
        return ""
    return f"; the subscribers' CPU per delivery: {r['system']} {x:.1f} ns, ceiling {y:.1f} ns"


def spread(row):
    if row.get("min_msgs_per_s") is None or row["min_msgs_per_s"] == row["max_msgs_per_s"]:
        return fmt_num(row["msgs_per_s"])
    return f"{fmt_num(row['min_msgs_per_s'])}-{fmt_num(row['max_msgs_per_s'])}"


def write_files(out, results, notes, meta):
    keys = []
    for r in results:
        for k in r:
            if k not in keys:
                keys.append(k)
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in results:
            w.writerow(r)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"machine": meta, "results": results, "notes": notes}, f, indent=1)
        f.write("\n")


def plots(out, results, gnuplot):
    """throughput.png (msgs/s and MB/s against size), latency.png (ping-pong CDF), fanout.png."""
    if not gnuplot:
        return ["gnuplot not found: no plots"]
    made, notes = [], []
    data = os.path.join(out, "plotdata")
    os.makedirs(data, exist_ok=True)
    thr_systems = []
    for r in results:
        if r["scenario"] == "throughput" and r["system"] not in thr_systems:
            thr_systems.append(r["system"])
    for s in thr_systems:
        with open(os.path.join(data, f"thr-{s}.dat"), "w") as f:
            for r in sorted((r for r in results if r["system"] == s and r["scenario"] == "throughput"),
                            key=lambda r: r["size"]):
                f.write(f"{r['size']} {r['msgs_per_s']} {r['mb_per_s']}\n")
    lat_systems = []
    for r in results:
        if r["scenario"] == "pingpong" and r.get("samples"):
            with open(os.path.join(out, r["samples"])) as f:
                vals = sorted(float(x) for x in f if x.strip())
            n = len(vals)
            with open(os.path.join(data, f"lat-{r['system']}.dat"), "w") as f:
                step = max(1, n // 2000)
                for i in list(range(0, n, step)) + [n - 1]:
                    f.write(f"{vals[i]} {100.0 * (i + 1) / n}\n")
            lat_systems.append(r["system"])
    fan_systems = []
    for r in results:
        if r["scenario"] == "fanout" and r["system"] not in fan_systems:
            fan_systems.append(r["system"])
    for s in fan_systems:
        with open(os.path.join(data, f"fan-{s}.dat"), "w") as f:
            for r in sorted((r for r in results if r["system"] == s and r["scenario"] == "fanout"),
                            key=lambda r: r["k"]):
                f.write(f"{r['k']} {r['msgs_per_s']} {r['p50_us']} {r['p99_us']}\n")

    def q(p):
        return p.replace("'", "")

    script = ["set terminal pngcairo size 1200,500 font ',10'" if pngcairo(gnuplot) else
              "set terminal png size 1200,500", "set grid", "set key top left"]
    if thr_systems:
        script += [f"set output '{q(os.path.join(out, 'throughput.png'))}'",
                   "set multiplot layout 1,2 title 'Throughput, one connection, loopback'",
                   "set key below",  # the curves fill both corners on the left
                   "set logscale xy", "set xlabel 'message size (bytes)'", "set ylabel 'messages/s'",
                   "set format y '%.0s%c'", "set xtics ('16' 16, '100' 100, '1K' 1024, '64K' 65536, '1M' 1048576)",
                   "plot " + ", ".join(f"'{q(os.path.join(data, f'thr-{s}.dat'))}' using 1:2 with linespoints "
                                       f"title '{s}'" for s in thr_systems),
                   "set ylabel 'MB/s'",
                   "plot " + ", ".join(f"'{q(os.path.join(data, f'thr-{s}.dat'))}' using 1:3 with linespoints "
                                       f"title '{s}'" for s in thr_systems),
                   "unset multiplot", "unset xtics", "set xtics", "unset logscale", "set format y '%g'",
                   "set key top left"]
        made.append("throughput.png")
    if lat_systems:
        script += [f"set output '{q(os.path.join(out, 'latency.png'))}'",
                   "set title 'Ping-pong round trip, 100-byte messages (CDF)'",
                   "set logscale x", "set xlabel 'round trip (us)'", "set ylabel 'percentile'",
                   "set key bottom right", "set yrange [0:100]",
                   "plot " + ", ".join(f"'{q(os.path.join(data, f'lat-{s}.dat'))}' using 1:2 with lines lw 2 "
                                       f"title '{s}'" for s in lat_systems),
                   "unset logscale", "unset title", "set autoscale y", "set key top left"]
        made.append("latency.png")
    if fan_systems:
        script += [f"set output '{q(os.path.join(out, 'fanout.png'))}'",
                   "set multiplot layout 1,2 title 'Fan-out, 100-byte messages'",
                   "set logscale xy", "set xlabel 'subscribers K'", "set ylabel 'delivered messages/s'",
                   "set format y '%.0s%c'",
                   "plot " + ", ".join(f"'{q(os.path.join(data, f'fan-{s}.dat'))}' using 1:2 with linespoints "
                                       f"title '{s}'" for s in fan_systems),
                   "set ylabel 'publish -> last subscriber p99 (us), paced'",
                   "plot " + ", ".join(f"'{q(os.path.join(data, f'fan-{s}.dat'))}' using 1:4 with linespoints "
                                       f"title '{s}'" for s in fan_systems),
                   "unset multiplot"]
        made.append("fanout.png")
    path = os.path.join(data, "plots.gp")
    with open(path, "w") as f:
        f.write("\n".join(script) + "\n")
    r = subprocess.run([gnuplot, path], capture_output=True, timeout=60)
    if r.returncode != 0:
        notes.append("gnuplot failed: " + r.stderr.decode("utf-8", "replace")[-300:])
    else:
        log("plots: " + ", ".join(os.path.join(out, m) for m in made))
    return notes


def pngcairo(gnuplot):
    try:
        r = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, timeout=10)
        return b"pngcairo" in r.stdout + r.stderr
    except (OSError, subprocess.TimeoutExpired):
        return False


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "loadavg_at_start": os.getloadavg()[0], "date_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())}


# --- main -----------------------------------------------------------------------------------

def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(prog=os.environ.get("FRAMECAST_BENCH_PROG"),  # set by `framecast bench`
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced set, under a minute")
    ap.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness, not speed")
    ap.add_argument("--bin-dir", help="where the bench_* peers are (default: the build next to the "
                    "framecast binary, else build/default/bench)")
    ap.add_argument("--framecast", help="the framecast binary (default: BIN_DIR/../bin/framecast)")
    ap.add_argument("--framecast-serve", help="binary for `serve` (default: --framecast)")
    ap.add_argument("--framecast-connect", help="binary for `connect`/`send` (default: --framecast)")
    ap.add_argument("--out", help="output directory (default: bench-results in the build directory)")
    ap.add_argument("--only", default="throughput,relay,pingpong,fanout,connections,websocket",
                    help="comma-separated scenarios to run; not in the default set: 'channels' "
                    "compares serve --channels with nats-server (bench/channels.py), 'tls' "
                    "serve --tls-cert with plain and stunnel4 (bench/tls_bench.py)")
    ap.add_argument("--systems", default="ceiling,framecast-direct,zeromq,tutorial-python,framecast-serve",
                    help="comma-separated systems to run (framecast-serve also selects the relay rows)")
    ap.add_argument("--sizes", help="comma-separated message sizes for throughput")
    ap.add_argument("--fanout-k", help="comma-separated subscriber counts")
    ap.add_argument("--repeat", type=int, help="throughput runs per case; the median is kept "
                    "(default: 3 in a full run, 1 with --quick or --smoke)")
    ap.add_argument("--paired-repeat", "--small-repeat", type=int, dest="paired_repeat",
                    help="throughput runs of the ceiling and framecast-direct per case, in pairs "
                         "run back to back on the same CPUs, which the 16 B, 100 B and 1 MiB "
                         "targets compare (default: 7 in a full run without --repeat, else "
                         "--repeat; ZeroMQ and the tutorial's Python run --repeat times)")
    ap.add_argument("--pin", nargs="?", const="fixed", default="alternate",
                    choices=("alternate", "fixed", "no"),
                    help="where the two processes of a direct pair run (when two CPUs are ours): "
                         "'alternate' (default) pins each throughput pair, "
                         "receiver and sender on a CPU each, swapped every repeat, every system of "
                         "one repeat in the same placement, and fan-out's saturated runs from K = 100 up "
                         "the same way (subscribers on one CPU, the publishing side on the other; "
                         "ZeroMQ's fan-out runs unpinned, where its threads run faster); 'fixed' "
                         "(or --pin alone) pins every direct pair, ping-pong too, and the same "
                         "fan-out runs, always the same way; 'no' leaves placement to the scheduler "
                         "(docs/bench.md, \"Paired repeats\", \"Fan-out pinned\")")
    ap.add_argument("--gnuplot", default=shutil.which("gnuplot"))
    a = ap.parse_args(argv)

    if not a.bin_dir:
        cands = [os.path.join(here, "..", "build", "default", "bench")]
        if a.framecast:
            cands.insert(0, os.path.join(os.path.dirname(os.path.abspath(a.framecast)), "..", "bench"))
        a.bin_dir = next((c for c in cands if os.path.exists(os.path.join(c, "bench_ceiling"))), cands[-1])
    a.bin_dir = os.path.abspath(a.bin_dir)
    if not os.path.exists(os.path.join(a.bin_dir, "bench_ceiling")):
        sys.exit(f"run.py: no bench_ceiling in {a.bin_dir}: build first (cmake --build --preset default) "
                 f"or pass --bin-dir")
    if not a.framecast:
        a.framecast = os.path.abspath(os.path.join(a.bin_dir, "..", "bin", "framecast"))

    if not a.out:
        a.out = os.path.join(os.path.dirname(a.bin_dir), "bench-results")

    if a.smoke:
        a.max_msgs, a.bytes_budget, a.ping_count = 20000, 8 * MiB, 200
        a.even_cpus_budget = 2.0
        a.direct_msgs = a.max_msgs
        a.fanout_deliveries, a.fanout_min, a.fanout_paced_deliveries = 20000, 50, 20000
        a.fanout_min_lat, a.fanout_lat_seconds, a.run_timeout, a.idle_ms = 20, 0.1, 20, 1000
        # 256 KiB: large frames in two writes (write_split_frame) in both direct peers
        # K = 100: the first pinned fan-out (FANOUT_PIN_FROM)
        sizes, ks, repeat, conns = [16, 100, 64 * KiB, 256 * KiB], [1, 100], 1, 100
    elif a.quick:
        a.max_msgs, a.bytes_budget, a.ping_count = 400_000, 256 * MiB, 5000
        a.even_cpus_budget = 30.0
        a.direct_msgs = 4_000_000
        a.fanout_deliveries, a.fanout_min, a.fanout_paced_deliveries = 1_000_000, 200, 50_000
        a.fanout_min_lat, a.fanout_lat_seconds, a.run_timeout, a.idle_ms = 50, 0.3, 30, 1000
        sizes, ks, repeat, conns = SIZES, [1, 100, 1000], 1, 1000
    else:
        a.max_msgs, a.bytes_budget, a.ping_count = 3_000_000, 2048 * MiB, 50_000
        a.even_cpus_budget = EVEN_CPUS_BUDGET_S
        a.direct_msgs = 60_000_000
        a.fanout_deliveries, a.fanout_min, a.fanout_paced_deliveries = 4_000_000, 400, 50_000
        a.fanout_min_lat, a.fanout_lat_seconds, a.run_timeout, a.idle_ms = 50, 2.0, 120, 2000
        sizes, ks, repeat, conns = SIZES, FANOUT_K, 3, 10000
    if a.sizes:
        sizes = [int(x) for x in a.sizes.split(",")]
    if a.fanout_k:
        ks = [int(x) for x in a.fanout_k.split(",")]
    given_repeat = a.repeat
    a.repeat = a.repeat or repeat
    a.paired_repeat = a.paired_repeat or (a.repeat if a.quick or a.smoke or given_repeat else 7)
    os.makedirs(a.out, exist_ok=True)
    a.out = os.path.abspath(a.out)
    raise_nofile()

    meta = machine()
    cpus = pair_cpus() if a.pin != "no" else None
    meta["pinned_pairs"] = ("no" if not cpus else
                            f"receiver and subscribers cpu{cpus[0]}, sender and publisher cpu{cpus[1]} "
                            f"(fan-out from K = {FANOUT_PIN_FROM} up, ZeroMQ's unpinned)"
                            if a.pin == "fixed" else
                            f"throughput pairs and fan-out's saturated runs from K = {FANOUT_PIN_FROM} up "
                            f"(but ZeroMQ's) on cpu{cpus[0]} "
                            f"and cpu{cpus[1]}, swapped every repeat")
    if meta["loadavg_at_start"] > 0.5 * (meta["nproc"] or 1):
        log(f"warning: load average {meta['loadavg_at_start']:.1f} on {meta['nproc']} cores: "
            "other work is running, figures will be noisy")
    r = Runner(a)
    try:
        return run_all(a, r, meta, sizes, ks, conns)
    finally:
        r.stop_all()  # Ctrl-C or a bug: no peer outlives the run


def websocket_bench(a, notes):
    """bench/ws_bench.py in this run: its summary lines become notes (issue 17's figures)."""
    k, count, idle = ("10", 200, 100) if a.smoke else ("100,1000", 1000 if a.quick else 3000,
                                                        1000 if a.quick else 10000)
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_bench.py"),
           "--bin", a.framecast, "--work", os.path.join(a.out, "ws-peer"), "--k", k,
           "--count", str(count), "--idle", str(idle)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        notes.append("websocket: ws_bench.py timed out")
        return
    for line in out.stdout.splitlines():
        print(line)
        if line.strip():
            notes.append("websocket " + line)
    if out.returncode != 0:
        notes.append("websocket: ws_bench.py failed: " + out.stderr.strip()[-300:])


def run_all(a, r, meta, sizes, ks, conns):
    scen = set(a.only.split(","))
    systems = a.systems.split(",")
    t_start = time.monotonic()
    if "throughput" in scen or "relay" in scen:  # --only relay: the relay rows alone
        log("scenario 1: throughput, one connection")
        meta["cpu_loop_ms_before_throughput"] = before = cpu_loop_ms()
        for size in sizes:
            if "throughput" in scen:
                r.throughput_all([s for s in systems if s in Runner.THR], size)
            if "relay" in scen and "framecast-serve" in systems:
                r.relays(size, ("stdin", "send"), "zeromq" in systems)
        meta["cpu_loop_ms_after_throughput"] = after = cpu_loop_ms()
        for when, ms in (("before the throughput rows", before), ("after them", after)):
            if (text := cpu_speed_note(when, ms)) is not None:
                r.note(text)
    if "fanout" in scen:
        log("scenario 2: fan-out, 100-byte messages")
        for k in ks:
            r.fanout_all([s for s in ("ceiling", "framecast-serve", "zeromq") if s in systems], k)
    if "pingpong" in scen:
        log("scenario 3: ping-pong, 100-byte messages")
        for s in systems:
            if s in Runner.PING:
                r.guarded(f"pingpong {s}", r.pingpong, s)
    if "connections" in scen:
        log("scenario 4: idle connections")
    if "connections" in scen and "framecast-serve" in systems:
        r.guarded(f"connections {conns}", r.connections, conns)
    if "connections" in scen and "zeromq" in systems:
        r.guarded("connections zeromq", r.zmq_connections, conns)

    if "websocket" in scen and "framecast-serve" in systems:
        log("scenario 5: WebSocket fan-out (framecast --ws, framecast TCP, Node ws) and idle clients")
        websocket_bench(a, r.notes)

    if "tls" in scen:
        log("tls: serve --tls-cert vs plain and vs stunnel4, handshakes/s (bench/tls_bench.py)")
        import tls_bench  # beside this file
        tls_bench.run(argparse.Namespace(bin=os.path.abspath(a.framecast_serve or a.framecast),
                                         repeat=a.repeat, quick=a.quick or a.smoke))

    if "channels" in scen:
        log("channels: serve --channels vs nats-server (bench/channels.py)")
        import channels  # beside this file
        channels.run(argparse.Namespace(bin_dir=a.bin_dir, framecast=a.framecast_serve or a.framecast,
                                        out=a.out, repeat=a.repeat, quick=a.quick, smoke=a.smoke))

    meta["seconds"] = round(time.monotonic() - t_start, 1)
    meta["mode"] = "smoke" if a.smoke else "quick" if a.quick else "full"
    ratio_rows(r.results)
    r.notes += plots(a.out, r.results, a.gnuplot)
    write_files(a.out, r.results, r.notes, meta)
    print(f"framecast bench ({meta['mode']}): {meta['nproc']} x {meta['cpu']}, Linux {meta['kernel']}, "
          f"load {meta['loadavg_at_start']:.1f} at start, {meta['seconds']} s, pinned: "
          f"{meta['pinned_pairs']}")
    for key, when in (("cpu_loop_ms_before_throughput", "before"), ("cpu_loop_ms_after_throughput", "after")):
        if meta.get(key):
            print(f"one loop on each CPU {when} the throughput rows: {fmt_cpu_ms(meta[key])}")
    print(table(r.results))
    print("\nTargets (issue 6), as ratios in this run"
          + (" (smoke counts: too small to mean anything)" if a.smoke else "") + ":")
    print(targets(r.results))
    if r.notes:
        print("\nNotes:")
        for n in r.notes:
            print("  - " + n)
    print(f"\nFiles: {a.out}/results.csv, results.json, *.png; logs in {a.out}/logs")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
