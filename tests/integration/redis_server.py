"""A real redis-server for tests: started on a free loopback port, in a temp dir, with an
fsync'd append-only file; stop() and start() again to simulate a restart."""
import shutil
import socket
import subprocess
import time

from framecast_test import DEADLINE, free_port

REDIS = shutil.which("redis-server")


class Redis:
    def __init__(self, tmp_path):
        self.dir, self.port, self.p = tmp_path, free_port(), None

    def start(self):
        self.p = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)  # poll interval while redis-server starts (bounded above)
        raise AssertionError("redis-server did not start")

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.terminate()
            self.p.wait(timeout=DEADLINE)

    def kill(self):
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def url(self, key="framecast"):
        return f"redis://127.0.0.1:{self.port}/{key}"

    def command(self, *args):
        """One command over RESP (a fresh connection); the raw reply."""
        req = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE) as s:
            s.sendall(req.encode())
            return s.recv(65536)
