"""Loopback helpers shared by the Python benchmarks (channels.py, tls_bench.py,
backplane_latency.py): a free port for a peer that must be told one, and waiting for a peer to
listen (bounded)."""
import socket
import time


def free_port():
    """A loopback port nothing listens on (bound, read back, closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    """Returns once something accepts on 127.0.0.1:`port`; raises after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)  # poll while the peer starts (bounded above)
    raise RuntimeError(f"nothing listening on {port}")
