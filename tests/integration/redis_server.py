"""A real redis-server for tests: started on a free loopback port, in a temp dir, with an
fsync'd append-only file; stop() and start() again to simulate a restart."""
import os
import shutil
import socket
import subprocess
import time

from framecast_test import DEADLINE, free_port

REDIS = shutil.which("redis-server")


class Redis:
    def __init__(self, tmp_path):
        self.dir, self.port, self.p = tmp_path, free_port(), None
        self.log = tmp_path / "redis.log"
        self.started = False

    def start(self):
        """Starts redis-server and returns once it answers. The first start takes another port
        when the one picked was taken before redis-server bound it (tests run in parallel: a
        PONG from another test's server once made this one's nodes follow that server, and
        lose it when that test ended); a restart keeps its port, which its nodes were told."""
        for _ in range(5 if not self.started else 1):
            self.p = subprocess.Popen(
                [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                 "--protected-mode", "no", "--logfile", str(self.log)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._answers():
                self.started = True
                return
            self.kill()
            self.port = free_port()
        raise AssertionError(f"redis-server did not start: {self.log_tail()}")

    def _answers(self):
        """True once this redis-server answers on self.port: its own working directory in the
        reply, not another server's. False when it exited (it could not bind the port)."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and self.p.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"CONFIG GET dir\r\n")
                    reply = s.recv(4096)
                    # The whole bulk string, CRLF to CRLF: another test's directory may
                    # start with this one's name (test_x1 and test_x10).
                    if b"\r\n" + os.path.realpath(self.dir).encode() + b"\r\n" in reply:
                        return True
            except OSError:
                pass
            time.sleep(0.05)  # poll interval while redis-server starts (bounded above)
        return False

    def log_tail(self, size=3000):
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"

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
