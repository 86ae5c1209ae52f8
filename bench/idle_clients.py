#!/usr/bin/env python3
"""Scale check for `framecast serve` (issue 3): N idle clients on loopback.

Reports the server's user-space memory per connection (VmRSS delta / N) and the time one
broadcast (a --source stdin line) takes to reach every client, measured from the write to the
server's stdin until the last client has the whole frame (the client side is one Python epoll
loop, so this is an upper bound).

    bench/idle_clients.py --bin build/default/bin/framecast --clients 10000 --rounds 5
"""
import argparse
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time

from procfs import rss_kib  # bench/procfs.py, beside this script


def cpu_seconds(pid):
    """utime + stime of the process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/default/bin/framecast")
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--payload", type=int, default=100, help="broadcast message size in bytes")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.clients + 100
    if hard < need:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {need}; raise it (ulimit -Hn) first")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    server = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--source", "stdin",
                               "--welcome", "", "--quiet", "--max-rate", "0", "--max-rate-bytes", "0", "--max-per-address", "0", "--memory-limit", "0"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = server.stdout.readline().decode()
    port = int(line.rsplit(":", 1)[1])
    time.sleep(0.3)
    base_rss, base_fds = rss_kib(server.pid), fd_count(server.pid)

    t0 = time.monotonic()
    clients = []
    for i in range(args.clients):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        clients.append(s)
    while fd_count(server.pid) < base_fds + args.clients:
        time.sleep(0.05)
    connect_s = time.monotonic() - t0
    time.sleep(0.5)
    rss = rss_kib(server.pid)
    per_conn = (rss - base_rss) * 1024 / args.clients
    print(f"clients: {args.clients} connected in {connect_s:.2f} s")
    print(f"server RSS: {base_rss} KiB idle, {rss} KiB with clients: "
          f"{per_conn:.0f} bytes ({per_conn / 1024:.2f} KiB) per connection")

    sel = selectors.DefaultSelector()
    for s in clients:
        sel.register(s, selectors.EVENT_READ)
    times, firsts, cpus = [], [], []
    for r in range(args.rounds):
        msg = (f"round {r} ".encode() + b"x" * args.payload)[: args.payload]
        frame_len = 10 + len(msg)
        got = {s.fileno(): 0 for s in clients}
        pending = len(clients)
        first = None
        cpu0 = cpu_seconds(server.pid)
        t0 = time.monotonic()
        server.stdin.write(msg + b"\n")
        server.stdin.flush()
        while pending:
            for key, _ in sel.select(timeout=10):
                s = key.fileobj
                data = s.recv(65536)
                if not data:
                    sys.exit("a client was disconnected")
                fd = s.fileno()
                before = got[fd]
                got[fd] += len(data)
                if before < frame_len <= got[fd]:
                    pending -= 1
                    if first is None:
                        first = time.monotonic() - t0
        times.append(time.monotonic() - t0)
        firsts.append(first)
        time.sleep(0.2)
        cpus.append(cpu_seconds(server.pid) - cpu0)
    print(f"broadcast of one {args.payload}-byte message to all {args.clients} clients: "
          f"median {statistics.median(times) * 1000:.1f} ms, "
          f"min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
          f"over {args.rounds} rounds (first client after median "
          f"{statistics.median(firsts) * 1000:.1f} ms)")
    print(f"server CPU time per broadcast: median {statistics.median(cpus) * 1000:.0f} ms "
          f"(clock ticks of {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms)")
    print(f"server RSS after broadcasts: {rss_kib(server.pid)} KiB")
    server.stdin.close()
    server.wait(timeout=60)
    for s in clients:
        s.close()


if __name__ == "__main__":
    main()
