#!/usr/bin/env python3
"""TLS cost, in the same run: framecast serve with --tls-cert against the same server in plain
TCP, and against the plain server behind Debian's stunnel4 (the usual way to add TLS to a
plaintext service). Issue "TLS and authentication":
  - 100 B relay (stdin-framed source -> serve -> connect --count N): TLS >= 0.7x plain
  - 1 MiB direct (the same with 1 MiB frames): TLS >= 0.6x plain
  - either, framecast TLS vs plain framecast behind stunnel: >= 1.5x
  - TLS handshakes per second on one core (`openssl s_time -new`, the server's CPU)
Every row alternates the systems --repeat times and reports medians and the median of the
per-pair ratios. Certificates are made here (python3-trustme). Loopback only.

  /usr/bin/python3 bench/tls_bench.py --bin build/default/bin/framecast [--quick]
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from loopback import free_port, wait_port  # beside this file

MIB = 1 << 20
LAB = ["--max-rate", "0", "--max-rate-bytes", "0", "--max-per-address", "0", "--memory-limit", "0"]


def log(msg):
    print(f"[tls] {msg}", file=sys.stderr, flush=True)


def frames_file(path, size, count):
    one = f"{size:<10}".encode() + b"x" * size
    with open(path, "wb") as f:
        for _ in range(count):
            f.write(one)


class Certs:
    def __init__(self, tmp):
        import trustme
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca = os.path.join(tmp, "ca.pem")
        self.cert = os.path.join(tmp, "server.pem")
        self.key = os.path.join(tmp, "server.key")
        ca.cert_pem.write_to_path(self.ca)
        cert.private_key_pem.write_to_path(self.key)
        with open(self.cert, "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())


def start_serve(a, certs, source_file, tls):
    args = [a.bin, "serve", "--listen", "127.0.0.1:0", "--source", "stdin-framed", "--wait-for", "1",
            "--welcome", "", "--backpressure", "1000000", "--max-message", "2MiB", "-q", *LAB]
    if tls:
        args += ["--tls-cert", certs.cert, "--tls-key", certs.key]
    p = subprocess.Popen(args, stdin=open(source_file, "rb"), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    line = p.stdout.readline().decode()
    return p, int(line.rsplit(":", 1)[1])


def start_stunnel(tmp, certs, plain_port):
    port = free_port()
    conf = os.path.join(tmp, f"stunnel-{port}.conf")
    with open(conf, "w") as f:
        f.write(f"foreground = yes\npid =\n[fc]\naccept = 127.0.0.1:{port}\n"
                f"connect = 127.0.0.1:{plain_port}\ncert = {certs.cert}\nkey = {certs.key}\n")
    p = subprocess.Popen([shutil.which("stunnel4") or "stunnel", conf],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, port


def transfer_once(a, tmp, certs, system, size, count, source_file):
    """Messages/s and MB/s at a `connect --count` client, from connect start to its exit."""
    tls = system == "framecast-tls"
    srv, port = start_serve(a, certs, source_file, tls)
    extra = []
    try:
        if system == "stunnel+framecast":
            st, port = start_stunnel(tmp, certs, port)
            extra.append(st)
        args = [a.bin, "connect", f"127.0.0.1:{port}", "--count", str(count), "-o", "framed",
                "--max-message", "2MiB", "-q"]
        if system != "framecast-plain":
            args += ["--tls", "--tls-ca", certs.ca]
        t0 = time.monotonic()
        r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        dt = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{system}: connect exited {r.returncode}: {r.stderr.decode()[-500:]}")
        return {"system": system, "size": size, "count": count, "seconds": dt,
                "msgs_per_s": count / dt, "mb_per_s": count * size / dt / 1e6}
    finally:
        for p in [srv, *extra]:
            p.kill()
            p.wait()


def handshakes_once(a, certs, seconds):
    """New TLS handshakes per second (openssl s_time -new) and per server CPU-second."""
    p = subprocess.Popen([a.bin, "serve", "--listen", "127.0.0.1:0", "--source", "none", "-q",
                          "--tls-cert", certs.cert, "--tls-key", certs.key, *LAB],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(p.stdout.readline().decode().rsplit(":", 1)[1])
    try:
        cpu0 = cpu_seconds(p.pid)
        r = subprocess.run(["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                            "-time", str(seconds), "-CAfile", certs.ca],
                           capture_output=True, timeout=seconds + 30)
        cpu = cpu_seconds(p.pid) - cpu0
        out = r.stdout.decode()
        # "1234 connections in 3.02s; 408.61 connections/user sec, bytes read 0"
        n = next(int(line.split()[0]) for line in out.splitlines()
                 if "connections in" in line and "real seconds" not in line)
        return {"system": "framecast-tls", "handshakes": n, "per_s": n / seconds,
                "per_server_cpu_s": n / cpu if cpu else 0.0}
    finally:
        p.kill()
        p.wait()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="build/default/bin/framecast")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smaller counts")
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    run(a)


def run(a):
    """Also called by `framecast bench --only tls` (bench/run.py)."""
    if not shutil.which("stunnel4") and not shutil.which("stunnel"):
        log("stunnel4 not installed: skipped")
        return
    small = 200_000 if a.quick else 1_000_000
    big = 100 if a.quick else 400
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU {cpu}, {os.cpu_count()} cores, Linux {platform.release()}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        certs = Certs(tmp)
        rows = []
        for size, count in ((100, small), (MIB, big)):
            source = os.path.join(tmp, f"frames-{size}")
            frames_file(source, size, count)
            runs = {s: [] for s in ("framecast-plain", "framecast-tls", "stunnel+framecast")}
            for i in range(a.repeat):
                for system in runs:
                    r = transfer_once(a, tmp, certs, system, size, count, source)
                    runs[system].append(r)
                    log(f"{size} B run {i} {system}: {r['msgs_per_s']:.4g} msgs/s, {r['mb_per_s']:.0f} MB/s")
            os.unlink(source)
            key = "msgs_per_s"
            med = {s: statistics.median(r[key] for r in rs) for s, rs in runs.items()}
            vs_plain = statistics.median(t[key] / p[key] for t, p in zip(runs["framecast-tls"], runs["framecast-plain"]))
            vs_stunnel = statistics.median(t[key] / s[key] for t, s in zip(runs["framecast-tls"], runs["stunnel+framecast"]))
            label = "100 B relay" if size == 100 else "1 MiB direct"
            goal = 0.7 if size == 100 else 0.6
            print(f"{label}: msgs/s plain {med['framecast-plain']:.4g}, TLS {med['framecast-tls']:.4g}, "
                  f"stunnel {med['stunnel+framecast']:.4g}; TLS/plain {vs_plain:.2f}x (goal >= {goal}x: "
                  f"{'met' if vs_plain >= goal else 'NOT met'}); TLS/stunnel {vs_stunnel:.2f}x "
                  f"(goal >= 1.5x: {'met' if vs_stunnel >= 1.5 else 'NOT met'})", flush=True)
            rows += [r for rs in runs.values() for r in rs]
        hs = [handshakes_once(a, certs, 2 if a.quick else 5) for _ in range(a.repeat)]
        print(f"TLS handshakes (openssl s_time -new, TLS 1.3, P-256 certificate): "
              f"{statistics.median(h['per_s'] for h in hs):.0f}/s wall clock, "
              f"{statistics.median(h['per_server_cpu_s'] for h in hs):.0f} per server CPU-second",
              flush=True)


if __name__ == "__main__":
    main()
