#!/usr/bin/env python3
"""WebSocket benchmarks (issue 17), all systems in one run on loopback:

fan-out: one source line of --size bytes (100) sent to K subscribers, N lines, for
  framecast-ws   framecast serve --source stdin --ws  (WebSocket clients)
  framecast-tcp  framecast serve --source stdin       (TCP clients of the tutorial's protocol)
  node-ws        npm `ws` broadcasting each stdin line (bench/ws/broadcast.js)
  nats-ws        nats-server's WebSocket listener: K subscribers of one subject, a TCP
                 publisher of the same lines (bench/nats_ws_peer.py; skipped without nats-server)
  Reported: deliveries/s (K*N / wall time from the first line written until every subscriber
  has every byte) and deliveries per server CPU second (what the server spends; less sensitive
  to a shared machine). The subscribers are one Python epoll loop counting bytes (no parsing), the
  same for every system, so the wall figure is a lower bound for all of them.
idle: --idle N idle WebSocket clients on framecast; server RSS growth per client.

    bench/ws_bench.py --bin build/default/bin/framecast [--k 100,1000] [--count 2000] [--idle 10000]

Needs node and npm for node-ws (installs `ws` from bench/ws/package-lock.json into
--work, default build/bench-ws); skipped with a note when they are missing.
"""
import argparse
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procfs import rss_kib  # noqa: E402
import nats_ws_peer  # noqa: E402
import ws_handshake  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_clients(port, k, ws):
    """K connected subscribers (WebSocket: handshake done, the 101 response read)."""
    socks = []
    for _ in range(k):
        s = socket.create_connection(("127.0.0.1", port))
        if ws:
            extra = ws_handshake.handshake(s, port)
            if extra:
                raise RuntimeError("bytes after the handshake before any message")
        s.setblocking(False)
        socks.append(s)
    return socks


def start_server(system, args):
    if system == "node-ws":
        cmd = ["node", os.path.join(HERE, "ws", "broadcast.js")]
        env = dict(os.environ, NODE_PATH=os.path.join(args.work, "node_modules"))
    else:
        binary = args.before if system == "framecast-ws-before" else args.bin
        cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--source", "stdin", "--welcome", "",
               "--quiet", "--client-buffer", "64MiB", "--backpressure", "30",
               "--max-rate", "0", "--max-rate-bytes", "0", "--max-per-address", "0", "--memory-limit", "0"]
        if system.startswith("framecast-ws"):
            cmd += ["--ws", "127.0.0.1:0"]
        env = None
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    port = None
    while port is None:
        line = p.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"{system} did not start")
        if system == "framecast-tcp" and line.startswith("listening on"):
            port = int(line.rsplit(":", 1)[1])
        elif system != "framecast-tcp" and line.startswith("websocket on"):
            port = int(line.strip().rstrip("/").rsplit(":", 1)[1])
    return p, port


def fanout(system, k, args):
    if system == "nats-ws":
        p, port, wsport = nats_ws_peer.start()
    else:
        p, port = start_server(system, args)
    try:
        if system == "nats-ws":
            # Each subscriber has had its PONG: its SUB is in place.
            socks = nats_ws_peer.subscribe(wsport, k)
            want = nats_ws_peer.want_bytes(args.count, args.size)
            counters = {s.fileno(): nats_ws_peer.FramePayloadCounter() for s in socks}
        else:
            socks = open_clients(port, k, system != "framecast-tcp")
            # Every subscriber is admitted before the first line (the server logs nothing: --quiet).
            time.sleep(0.5)
            per_msg = args.size + (10 if system == "framecast-tcp" else (2 if args.size < 126 else 4))
            want = per_msg * args.count
            counters = None
        got = {s.fileno(): 0 for s in socks}
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        line = b"x" * args.size + b"\n"
        cpu0 = cpu_seconds(p.pid)
        pcpu0 = time.process_time()
        t0 = time.monotonic()
        if system == "nats-ws":
            publisher = nats_ws_peer.publish(port, args.count, args.size)
        else:
            p.stdin.write(line * args.count)
            p.stdin.flush()
        done = 0
        recvs = 0  # the subscribers' recv() calls: what the peer pays for, per system
        deadline = t0 + args.timeout
        while done < k:
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out: {done} of {k} subscribers complete")
            for key, _ in sel.select(1.0):
                s = key.fileobj
                try:
                    data = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                if counters is not None:  # nats-ws: the frames' payload, not their headers
                    c = counters[s.fileno()]
                    c.feed(data)
                    got[s.fileno()] = c.payload
                else:
                    got[s.fileno()] += len(data)
                recvs += 1
                if got[s.fileno()] >= want:
                    sel.unregister(s)
                    done += 1
        wall = time.monotonic() - t0
        cpu = cpu_seconds(p.pid) - cpu0
        for s in socks:
            s.close()
        if system == "nats-ws":
            publisher.close()
        deliveries = k * args.count
        return {"system": system, "k": k, "count": args.count, "wall": wall, "cpu": cpu,
                "recvs": recvs, "peer_cpu": time.process_time() - pcpu0,
                "per_s": deliveries / wall, "per_cpu_s": deliveries / cpu if cpu > 0 else float("inf")}
    finally:
        p.kill()
        p.wait()


def idle(args, system="framecast-ws"):
    p, port = start_server(system, args)
    try:
        time.sleep(0.3)
        base = rss_kib(p.pid)
        socks = open_clients(port, args.idle, True)
        time.sleep(1.0)
        grown = rss_kib(p.pid) - base
        for s in socks:
            s.close()
        return {"system": system, "clients": args.idle, "rss_kib": grown,
                "per_client_bytes": grown * 1024 / args.idle}
    finally:
        p.kill()
        p.wait()


def node_ready(args):
    if not shutil.which("node") or not shutil.which("npm"):
        print("note: node/npm not installed: node-ws skipped", file=sys.stderr)
        return False
    os.makedirs(args.work, exist_ok=True)
    lock = os.path.join(HERE, "ws", "package-lock.json")
    mine = os.path.join(args.work, "package-lock.json")
    if not os.path.isdir(os.path.join(args.work, "node_modules", "ws")) or \
            open(lock).read() != (open(mine).read() if os.path.exists(mine) else ""):
        shutil.copy(os.path.join(HERE, "ws", "package.json"), args.work)
        shutil.copy(lock, args.work)
        # npm's own report ("added 1 package") to stderr: stdout carries the results only.
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=args.work, check=True, stdout=sys.stderr)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/default/bin/framecast")
    ap.add_argument("--work", default="build/bench-ws")
    ap.add_argument("--k", default="100,1000")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--idle", type=int, default=10000, help="idle WebSocket clients (0: skip)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--before", help="another framecast binary, measured as framecast-ws-before in "
                    "the same run (a change's before and after, each against the same TCP figure)")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    systems = ["framecast-ws", "framecast-tcp"] + (["framecast-ws-before"] if args.before else []) + \
        (["node-ws"] if node_ready(args) else [])
    if shutil.which("nats-server"):
        systems.append("nats-ws")
    else:
        print("note: nats-server not installed: nats-ws skipped", file=sys.stderr)
    rows = []
    for k in [int(x) for x in args.k.split(",") if x.strip()]:  # --k "": idle only
        for system in systems:
            r = fanout(system, k, args)
            rows.append(r)
            print(f"fanout {system:14} K={k:<5} {r['per_s']:>12,.0f} deliveries/s  "
                  f"{r['per_cpu_s']:>12,.0f} per server CPU s  (wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s; "
                  f"subscribers: {r['recvs']} recv calls, {r['peer_cpu']:.2f} s CPU)",
                  flush=True)
    for k in sorted({r["k"] for r in rows}):
        by = {r["system"]: r for r in rows if r["k"] == k}
        ws = by["framecast-ws"]
        line = f"K={k}: framecast-ws / framecast-tcp = {ws['per_s'] / by['framecast-tcp']['per_s']:.2f}x " \
               f"(per CPU s {ws['per_cpu_s'] / by['framecast-tcp']['per_cpu_s']:.2f}x)"
        if "framecast-ws-before" in by:
            b = by["framecast-ws-before"]
            line += f"; before / framecast-tcp = {b['per_s'] / by['framecast-tcp']['per_s']:.2f}x " \
                    f"(per CPU s {b['per_cpu_s'] / by['framecast-tcp']['per_cpu_s']:.2f}x)"
        for peer in ("node-ws", "nats-ws"):
            if peer in by:
                line += f"; framecast-ws / {peer} = {ws['per_s'] / by[peer]['per_s']:.2f}x " \
                        f"(per CPU s {ws['per_cpu_s'] / by[peer]['per_cpu_s']:.2f}x)"
        print(line)
    if args.idle:
        for system in ["framecast-ws"] + (["framecast-ws-before"] if args.before else []):
            r = idle(args, system)
            print(f"idle {system}: {r['clients']} WebSocket clients, server RSS +{r['rss_kib']} KiB = "
                  f"{r['per_client_bytes']:.0f} bytes per client")


if __name__ == "__main__":
    main()
