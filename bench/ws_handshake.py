"""The client side of a WebSocket handshake (RFC 6455 4.1) on a connected socket, for the
benchmark peers: sends the upgrade request, reads the response, and returns the bytes that came
after it (a server may send its first message at once)."""
import base64
import os


def upgrade_request(port):
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def handshake(sock, port, who="the server"):
    sock.sendall(upgrade_request(port))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"{who} refused the WebSocket handshake")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(buf[:200])
    return buf.split(b"\r\n\r\n", 1)[1]
