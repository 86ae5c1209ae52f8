"""A WebSocket test peer: python3-wsproto (Debian) over a plain socket, so a test controls every
byte (fragments, raw frames, a handshake trickled a byte at a time) and still speaks the
protocol through an implementation that is not framecast's."""
import os
import socket
import struct
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping, Pong,
                            RejectConnection, RejectData, Request, TextMessage)

from framecast_test import DEADLINE


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed {code} {reason!r}")
        self.code, self.reason = code, reason


def raw_frame(opcode, payload, fin=True, mask=True):
    """One WebSocket frame built by hand (RFC 6455 5.2), for what wsproto refuses to send."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class WsPeer:
    def __init__(self, port, path="/", origin=None, host="127.0.0.1", trickle=False, headers=()):
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = ([("Origin", origin)] if origin else []) + list(headers)
        self.pending = []   # events received, not yet handed out
        self.parts = []     # a message arriving in fragments
        self.pings = []     # payloads of pings the server sent (answered automatically)
        self.auto_pong = True
        self.status = None
        request = self.ws.send(Request(host=f"{host}:{port}", target=path, extra_headers=headers))
        if trickle:
            for i in range(len(request)):
                self.sock.sendall(request[i:i + 1])
                time.sleep(0.002)  # pacing, so each byte travels in a segment of its own
        else:
            self.sock.sendall(request)
        ev = self._next(DEADLINE)
        if isinstance(ev, AcceptConnection):
            self.status = 101
        elif isinstance(ev, RejectConnection):
            self.status = ev.status_code
            self.body = b""
            while ev.has_body:
                ev2 = self._next(DEADLINE, allow_eof=True)
                if ev2 is None:
                    break
                if isinstance(ev2, RejectData):
                    self.body += ev2.data
                    if ev2.body_finished:
                        break

    def _next(self, timeout, allow_eof=False):
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.ws.events():
                if isinstance(ev, Ping):
                    self.pings.append(ev.payload)
                    if self.auto_pong:
                        self.sock.sendall(self.ws.send(ev.response()))
                    continue
                self.pending.append(ev)
            if self.pending:
                return self.pending.pop(0)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no WebSocket event from the server")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                if allow_eof:
                    return None
                raise EOFError("the server closed the TCP connection")
            self.ws.receive_data(data)

    def recv(self, timeout=DEADLINE):
        """The next whole message: str (text) or bytes (binary). Raises Closed on a close frame."""
        while True:
            ev = self._next(timeout)
            if isinstance(ev, CloseConnection):
                try:
                    self.sock.sendall(self.ws.send(ev.response()))
                except Exception:
                    pass
                raise Closed(ev.code, ev.reason)
            if isinstance(ev, (TextMessage, BytesMessage)):
                self.parts.append(ev.data)
                if ev.message_finished:
                    whole = "".join(self.parts) if isinstance(ev, TextMessage) else b"".join(self.parts)
                    self.parts = []
                    return whole

    def expect_close(self, timeout=DEADLINE):
        """Reads until the server's close frame; returns its code."""
        return self.expect_close_reason(timeout)[0]

    def expect_close_reason(self, timeout=DEADLINE):
        """Reads until the server's close frame; returns (code, reason text)."""
        try:
            while True:
                self.recv(timeout)
        except Closed as c:
            return c.code, c.reason

    def next_event(self, timeout=DEADLINE):
        return self._next(timeout)

    def send(self, data, finished=True):
        ev = TextMessage(data=data, message_finished=finished) if isinstance(data, str) \
            else BytesMessage(data=data, message_finished=finished)
        self.sock.sendall(self.ws.send(ev))

    def ping(self, payload):
        self.sock.sendall(self.ws.send(Ping(payload=payload)))

    def close(self, code=1000):
        self.sock.sendall(self.ws.send(CloseConnection(code=code)))

    def send_raw(self, data):
        self.sock.sendall(data)

    def wait_eof(self, timeout=DEADLINE):
        """Until the server closes the TCP connection (what arrives meanwhile is read and dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not close the connection")
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    return
            except ConnectionResetError:
                return

    def shutdown(self):
        self.sock.close()


def ws_url(proc):
    """(host, port) of a server started with --ws HOST:0 (it prints 'websocket on ws://HOST:PORT/')."""
    m = proc.wait_for(rb"websocket on ws://([0-9.]+):(\d+)/", stream="out")
    return m.group(1).decode(), int(m.group(2))
