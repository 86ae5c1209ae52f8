#!/usr/bin/env python3
"""Channels benchmark: `framecast serve --channels` side by side with nats-server, alternating
runs of the same load generator (bench_channels, one epoll loop per process) against each.

Scenarios (issue 16):
  fanout K    one publisher, K subscribers of one subject: deliveries per second
  noise       publish throughput to one subscriber while 10,000 wildcard subscriptions that
              match nothing are present: deliveries per second
  memory      RSS growth of the server for S subscriptions over CH channels: bytes per subscription
  churn       subscribe / unsubscribe round trips (each followed by PING): p50 / p99

Ratios are framecast / nats-server per pair of alternating runs (the machine may be shared:
absolute figures move, ratios of back-to-back runs much less); the median ratio is reported.
Run it directly, or as `framecast bench --only channels`."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from loopback import free_port, wait_port  # beside this file

MiB = 1 << 20


def log(msg):
    print(f"[channels] {msg}", file=sys.stderr, flush=True)


class Proc:
    def __init__(self, args, stdin=None):
        self.args = [str(a) for a in args]
        self.p = subprocess.Popen(self.args, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)

    def line(self, want, timeout):
        """Reads stdout lines until one starts with `want`; returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            if line.startswith(want):
                return line.strip()
        raise RuntimeError(f"{self.args[0]}: no '{want}' line: {self.p.stderr.read()[-2000:] if self.p.poll() is not None else ''}")

    def result(self, timeout):
        self.p.wait(timeout=timeout)
        out = self.p.stdout.read().strip().splitlines()
        if self.p.returncode != 0 or not out:
            raise RuntimeError(f"{self.args[:2]} exited {self.p.returncode}: {self.p.stderr.read()[-2000:]}")
        return json.loads(out[-1])

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def cpu_seconds(pid):
    """User + system CPU time of a process so far. On a shared machine a multi-threaded server
    gets more of the CPU than a single-threaded one, so deliveries per CPU-second of the server
    are reported beside deliveries per second."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Servers:
    def __init__(self, a, tmp):
        self.a, self.tmp = a, tmp
        self.nats_bin = shutil.which("nats-server")
        self.conf = os.path.join(tmp, "nats.conf")
        with open(self.conf, "w") as f:
            # Raised so it drops nothing (a slow consumer is cut at max_pending bytes or when a
            # write takes longer than write_deadline). NATS cannot hold a publisher back, so it
            # must buffer; framecast holds publishers back while a subscriber's queue is over
            # half of --client-buffer (--backpressure), so it is given a modest buffer and a
            # long --backpressure, which also drops nothing.
            f.write("max_pending: 1073741824\nwrite_deadline: \"120s\"\nmax_payload: 1048576\n")

    def start(self, system):
        if system == "nats-server":
            port = free_port()
            p = Proc([self.nats_bin, "-a", "127.0.0.1", "-p", port, "-c", self.conf])
            wait_port(port)
            return p, f"127.0.0.1:{port}"
        p = Proc([self.a.framecast, "serve", "--channels", "--listen", "127.0.0.1:0",
                  "--client-buffer", "16MiB", "--max-message", "1MiB", "--max-subscriptions", "100000",
                  "--max-channels", "10000000", "--backpressure", "60", "-q",
                  # the exposure limits off: one publisher sends millions a second
                  "--max-rate", "0", "--max-rate-bytes", "0", "--max-per-address", "0", "--memory-limit", "0"])
        addr = p.line("listening on", 10).split()[-1]
        return p, addr


def proto(system):
    return "nats" if system == "nats-server" else "fc"


def fanout_once(a, servers, system, k, count, noise=0):
    srv, addr = servers.start(system)
    procs = [srv]
    try:
        peer = os.path.join(a.bin_dir, "bench_channels")
        if noise:
            n = Proc([peer, "noise", "--proto", proto(system), "--connect", addr, "--n", noise,
                      "--conns", 10], stdin=subprocess.PIPE)
            procs.append(n)
            n.line("ready", 120)
        cpu0 = cpu_seconds(srv.p.pid)
        if k == 0:  # publish throughput alone: what the server ingests and matches
            pub = Proc([peer, "pub", "--proto", proto(system), "--connect", addr, "--subject",
                        "bench.x", "--size", 100, "--count", count])
            procs.append(pub)
            row = pub.result(300)
            row["system"], row["k"], row["noise"] = system, 0, noise
            row["server_cpu_s"] = cpu_seconds(srv.p.pid) - cpu0
            row["per_cpu_s"] = count / row["server_cpu_s"] if row["server_cpu_s"] else 0.0
            return row
        subs = Proc([peer, "subs", "--proto", proto(system), "--connect", addr, "--k", k,
                     "--subject", "bench.x", "--size", 100, "--count", count, "--system", system,
                     "--idle-ms", 3000, "--deadline-s", 300])
        procs.append(subs)
        subs.line("ready", 120)
        pub = Proc([peer, "pub", "--proto", proto(system), "--connect", addr, "--subject", "bench.x",
                    "--size", 100, "--count", count])
        procs.append(pub)
        published = pub.result(300)
        row = subs.result(300)
        row["server_cpu_s"] = cpu_seconds(srv.p.pid) - cpu0
        row["per_cpu_s"] = row["delivered"] / row["server_cpu_s"] if row["server_cpu_s"] else 0.0
        row["published_per_s"] = published["msgs_per_s"]
        if row["delivered"] < row["expected"]:
            row["note"] = f"{row['expected'] - row['delivered']} deliveries missing"
        return row
    finally:
        for p in procs:
            p.stop()


def memory_once(a, servers, system, channels, subs, conns):
    srv, addr = servers.start(system)
    peer = os.path.join(a.bin_dir, "bench_channels")
    m = Proc([peer, "many", "--proto", proto(system), "--connect", addr, "--channels", channels,
              "--subs", subs, "--conns", conns], stdin=subprocess.PIPE)
    try:
        m.line("connected", 120)
        before = rss_bytes(srv.p.pid)
        t0 = time.monotonic()
        m.p.stdin.write("go\n")
        m.p.stdin.flush()
        m.line("ready", 900)
        secs = time.monotonic() - t0
        after = rss_bytes(srv.p.pid)
        return {"system": system, "scenario": "memory", "channels": channels, "subs": subs,
                "conns": conns, "rss_before": before, "rss_after": after,
                "bytes_per_sub": (after - before) / subs, "subscribe_s": secs}
    finally:
        m.stop()
        srv.stop()


def churn_once(a, servers, system, n):
    srv, addr = servers.start(system)
    peer = os.path.join(a.bin_dir, "bench_channels")
    procs = [srv]
    try:
        noise = Proc([peer, "noise", "--proto", proto(system), "--connect", addr, "--n", 10000,
                      "--conns", 10], stdin=subprocess.PIPE)
        procs.append(noise)
        noise.line("ready", 120)
        c = Proc([peer, "churn", "--proto", proto(system), "--connect", addr, "--n", n])
        procs.append(c)
        return c.result(600)
    finally:
        for p in procs:
            p.stop()


def pair_ratio(rows, key, higher=True):
    """Median over alternating pairs (framecast row, nats row) of framecast/nats."""
    fc = [r[key] for r in rows if r["system"] == "framecast-channels"]
    nats = [r[key] for r in rows if r["system"] == "nats-server"]
    ratios = [(f / n if higher else n / f) for f, n in zip(fc, nats) if f and n]
    return statistics.median(ratios) if ratios else float("nan")


def alternate(a, label, fn, key, higher=True):
    """Runs fn(system) for framecast then nats-server, a.repeat times; returns rows and the
    median of the per-pair ratios (framecast / nats, or nats / framecast when lower is better)."""
    rows, ratios = [], []
    for i in range(a.repeat):
        pair = {}
        for system in ("framecast-channels", "nats-server"):
            row = fn(system)
            row["run"] = i
            rows.append(row)
            pair[system] = row[key]
            log(f"{label} {system} run {i}: {key} = {row[key]:.4g}")
        fc, nats = pair["framecast-channels"], pair["nats-server"]
        if fc and nats:
            ratios.append(fc / nats if higher else nats / fc)
    return rows, statistics.median(ratios) if ratios else float("nan")


def run(a):
    if not shutil.which("nats-server"):
        log("nats-server not installed: skipped")
        return 0
    if a.smoke:
        deliveries, ks, noise_count, mem, churn_n = 20_000, [10], 20_000, (1000, 10_000, 11), 200
    elif a.quick:
        deliveries, ks, noise_count, mem, churn_n = 1_000_000, [100, 1000], 1_000_000, (100_000, 1_000_000, 101), 2000
    else:
        deliveries, ks, noise_count, mem, churn_n = 4_000_000, [100, 1000], 2_000_000, (100_000, 1_000_000, 101), 5000
    results, summary = [], []
    with tempfile.TemporaryDirectory() as tmp:
        servers = Servers(a, tmp)
        for k in ks:
            count = max(200, deliveries // k)
            rows, ratio = alternate(a, f"fanout K={k}", lambda s: fanout_once(a, servers, s, k, count),
                                    "msgs_per_s")
            results += rows
            summary.append((f"fan-out K={k}, 100 B: deliveries/s", ratio, 2.5, rows))
        rows, ratio = alternate(a, "publish with 10,000 non-matching wildcard subscriptions",
                                lambda s: fanout_once(a, servers, s, 0, noise_count, noise=10_000),
                                "msgs_per_s")
        results += rows
        summary.append(("publish, 10,000 non-matching wildcard subs: published/s", ratio, 2.0, rows))
        rows, ratio = alternate(a, "the same with one matching subscriber",
                                lambda s: fanout_once(a, servers, s, 1, noise_count, noise=10_000),
                                "msgs_per_s")
        results += rows
        summary.append(("  ... and one matching subscriber (K=1): deliveries/s", ratio, None, rows))
        channels, subs, conns = mem
        rows, ratio = alternate(a, "memory", lambda s: memory_once(a, servers, s, channels, subs, conns),
                                "bytes_per_sub", higher=False)
        results += rows
        summary.append((f"memory, {subs} subs over {channels} channels: bytes/sub (nats/fc)", ratio, None, rows))
        rows, ratio = alternate(a, "churn", lambda s: churn_once(a, servers, s, churn_n), "sub_p99_us",
                                higher=False)
        results += rows
        summary.append(("subscribe p99 (nats/fc)", ratio, None, rows))
        unsub = [r["unsub_p99_us"] for r in rows]
        pairs = list(zip(unsub[1::2], unsub[0::2]))
        summary.append(("unsubscribe p99 (nats/fc)",
                        statistics.median(n / f for n, f in pairs) if pairs else float("nan"), None, rows))

    def med(rows, system, key):
        vals = [r[key] for r in rows if r["system"] == system and key in r]
        return statistics.median(vals) if vals else float("nan")

    print(f"\nChannels: framecast serve --channels vs nats-server ({a.repeat} alternating runs each; "
          "medians; ratio = median of per-pair ratios, > 1 means framecast is better)")
    for text, ratio, goal, rows in summary:
        key = ("msgs_per_s" if "deliveries" in text or "published" in text else "bytes_per_sub" if "memory" in text
               else "unsub_p99_us" if "unsubscribe" in text else "sub_p99_us")
        fc, nats = med(rows, "framecast-channels", key), med(rows, "nats-server", key)
        goal_text = f"  goal >= {goal}x: {'met' if ratio >= goal else 'NOT met'}" if goal else ""
        print(f"  {text:<62} framecast {fc:>12.4g}  nats {nats:>12.4g}  ratio {ratio:5.2f}x{goal_text}")
        if key == "msgs_per_s":
            fcc, natsc = med(rows, "framecast-channels", "per_cpu_s"), med(rows, "nats-server", "per_cpu_s")
            print(f"  {'    per CPU-second of the server':<62} framecast {fcc:>12.4g}  nats {natsc:>12.4g}  "
                  f"ratio {pair_ratio(rows, 'per_cpu_s'):5.2f}x")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "channels.json"), "w") as f:
            json.dump(results, f, indent=1)
        print(f"  rows: {os.path.join(a.out, 'channels.json')}")
    return 0


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=os.path.join(here, "..", "build", "default", "bench"))
    ap.add_argument("--framecast", help="default: BIN_DIR/../bin/framecast")
    ap.add_argument("--out", help="where channels.json goes")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs per scenario")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny counts: checks the harness only")
    a = ap.parse_args(argv)
    a.bin_dir = os.path.abspath(a.bin_dir)
    a.framecast = a.framecast or os.path.join(a.bin_dir, "..", "bin", "framecast")
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
