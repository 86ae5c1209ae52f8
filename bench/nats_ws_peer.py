"""nats-server's WebSocket listener as a fan-out peer for ws_bench.py (issue 17: "beside
nats-server's WebSocket listener"): K WebSocket subscribers of one subject and one TCP
publisher of the same N lines of --size bytes. What nats-server sends a subscriber is the NATS
protocol (`MSG fan 1 100\\r\\n` + payload + `\\r\\n`) inside WebSocket frames it may batch, so a
subscriber counts frame payload bytes (headers parsed) until it has N whole MSGs' worth.
The subscribers are the same kind of Python epoll loop as ws_bench.py's."""
import os
import socket
import subprocess
import tempfile
import time

import ws_handshake


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client_frame(payload):
    """A client's WebSocket frame (binary, final, masked as RFC 6455 requires)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class FramePayloadCounter:
    """Counts the payload bytes of a server's (unmasked) frames across recv() boundaries."""

    def __init__(self):
        self.pending = b""  # the start of a frame header cut by a recv() boundary
        self.left = 0       # payload bytes of the current frame still to come
        self.payload = 0

    def feed(self, data):
        i, n = 0, len(data)
        while i < n:
            if self.left:
                take = min(self.left, n - i)
                self.left -= take
                self.payload += take
                i += take
                continue
            head = self.pending + data[i:i + 14]
            if len(head) < 2:
                self.pending = head
                return
            size = head[1] & 0x7F
            hl = 4 if size == 126 else 10 if size == 127 else 2
            if len(head) < hl:
                self.pending = head  # all of data[i:] is in it (a header is at most 10 bytes)
                return
            if hl > 2:
                size = int.from_bytes(head[2:hl], "big")
            i += hl - len(self.pending)
            self.pending = b""
            self.left = size


def start():
    """nats-server with a WebSocket listener; returns (process, tcp port, websocket port)."""
    port, wsport = _free_port(), _free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write(f'listen: "127.0.0.1:{port}"\nmax_pending: 256MB\nwrite_deadline: "60s"\n'
               f'websocket {{\n  listen: "127.0.0.1:{wsport}"\n  no_tls: true\n  compression: false\n}}\n')
    conf.close()
    p = subprocess.Popen(["nats-server", "-c", conf.name], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", wsport), timeout=1).close()
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or p.poll() is not None:
                p.kill()
                raise RuntimeError("nats-server did not start")
            time.sleep(0.05)  # poll interval
    os.unlink(conf.name)
    return p, port, wsport


def subscribe(wsport, k):
    """K WebSocket clients subscribed to `fan` (each has seen its PONG: the SUB is in place)."""
    socks = []
    for _ in range(k):
        s = socket.create_connection(("127.0.0.1", wsport))
        buf = ws_handshake.handshake(s, wsport, "nats-server")
        s.sendall(_client_frame(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB fan 1\r\nPING\r\n'))
        while b"PONG" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("nats-server closed a subscriber")
            buf += chunk
        s.setblocking(False)
        socks.append(s)
    return socks


def publish(port, count, size):
    """A TCP publisher: CONNECT, then `count` PUBs of `size` bytes in one write."""
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(4096)  # INFO
    payload = b"x" * size
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n' +
              (b"PUB fan %d\r\n" % size + payload + b"\r\n") * count + b"PING\r\n")
    return s


def want_bytes(count, size):
    """What one subscriber receives: `count` MSGs of `size` bytes (subject fan, sid 1)."""
    return count * (len(b"MSG fan 1 %d\r\n" % size) + size + 2)


def self_test():
    c = FramePayloadCounter()
    frames = bytes([0x82, 3]) + b"abc" + bytes([0x82, 126]) + (300).to_bytes(2, "big") + b"y" * 300
    for i in range(len(frames)):
        c.feed(frames[i:i + 1])
    assert c.payload == 303, c.payload


if __name__ == "__main__":
    self_test()
    print("ok")
