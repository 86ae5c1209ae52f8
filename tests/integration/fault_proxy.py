"""A fault-injecting TCP proxy for tests: forwards 127.0.0.1:<port> to a target port and, on
request, cuts every connection it carries, with an RST (SO_LINGER 0) or a clean close, on
both sides. Several target ports: each new connection goes to the next one that accepts
(round robin), so a client that reconnects lands on another node. Threads only; every socket
is closed by close()."""
import random
import socket
import struct
import threading


class FaultProxy:
    def __init__(self, target_port, host="127.0.0.1"):
        self.host = host
        self.targets = list(target_port) if isinstance(target_port, (list, tuple)) else [target_port]
        self.turn = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []
        self.accepted = 0
        self.closed = False
        # While set, what the target sends is dropped instead of forwarded (acknowledgements
        # lost in flight, as before a connection breaks).
        self.replies_lost = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = self._connect_upstream()
            if upstream is None:
                client.close()
                continue
            pair = (client, upstream)
            with self.lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.pairs.append(pair)
                self.accepted += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, pair), daemon=True).start()

    def _connect_upstream(self):
        """The next target that accepts, in turn; None when none does."""
        with self.lock:
            targets = list(self.targets)
            start = self.turn
            self.turn += 1
        for i in range(len(targets)):
            try:
                s = socket.create_connection((self.host, targets[(start + i) % len(targets)]),
                                             timeout=5)
                s.settimeout(None)
                return s
            except OSError:
                continue
        return None

    def set_targets(self, ports):
        with self.lock:
            self.targets = list(ports)

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if src is pair[1] and self.replies_lost.is_set():
                    continue
                dst.sendall(data)
        except OSError:
            pass
        self._drop(pair, rst=False)

    def _drop(self, pair, rst):
        with self.lock:
            if pair not in self.pairs:
                return
            self.pairs.remove(pair)
        for s in pair:
            try:
                if rst:
                    # SHUT_RD wakes the pump blocked in recv() without sending anything; the
                    # close with a zero linger then sends the RST.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def connections(self):
        with self.lock:
            return len(self.pairs)

    def cut(self, rst=False):
        """Cuts every connection now; returns how many there were."""
        with self.lock:
            pairs = list(self.pairs)
        for p in pairs:
            self._drop(p, rst)
        return len(pairs)

    def cut_one(self, rst=False):
        """Cuts one connection chosen at random; False when there was none."""
        with self.lock:
            pair = random.choice(self.pairs) if self.pairs else None
        if pair is None:
            return False
        self._drop(pair, rst)
        return True

    def close(self):
        with self.lock:
            self.closed = True
        self.listener.close()
        self.cut(rst=True)
