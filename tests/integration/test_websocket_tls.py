"""wss:// in the clients (`framecast connect|send|chat wss://HOST:PORT/PATH`): the WebSocket runs
over TLS made as `--tls` makes it, so the --tls-* options apply. The server is an independent
peer: python3-websockets over Python's ssl, with certificates made by the test (python3-trustme)."""
import asyncio
import signal
import ssl
import subprocess
import threading
import urllib.request

import pytest

from framecast_test import BIN, DEADLINE, wait_for_log

trustme = pytest.importorskip("trustme")
websockets = pytest.importorskip("websockets")


class WssServer:
    """A python3-websockets server over TLS on 127.0.0.1, port 0, in a thread of its own: sends
    `greeting` (a list of messages) to each client and records what each sends, with the path."""

    def __init__(self, cert, greeting):
        self.greeting = greeting
        self.received = []
        self.paths = []
        self.closed = threading.Event()
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.ctx)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(DEADLINE)

    async def _handler(self, ws, path):
        self.paths.append(path)
        for m in self.greeting:
            await ws.send(m)
        try:
            async for m in ws:
                self.received.append(m)
        finally:
            self.closed.set()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await websockets.serve(self._handler, "127.0.0.1", 0, ssl=self.ctx)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            await self.server.wait_closed()
        self.loop.run_until_complete(main())

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(DEADLINE)


@pytest.fixture
def pki(tmp_path):
    ca = trustme.CA()
    files = {"ca": tmp_path / "ca.pem", "other_ca": tmp_path / "other.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    trustme.CA().cert_pem.write_to_path(str(files["other_ca"]))
    return ca, files


@pytest.fixture
def wss(pki):
    ca, _ = pki
    servers = []

    def make(greeting=()):
        s = WssServer(ca.issue_cert("127.0.0.1", "localhost"), list(greeting))
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


def test_connect_reads_text_and_binary_messages_over_wss(procs, pki, wss):
    _, files = pki
    server = wss(["Welcome to the server!", "ünïcode ✓", b"\x00\xffbinary"])
    c = procs.framecast("connect", f"wss://127.0.0.1:{server.port}/live", "--tls-ca", files["ca"],
                        "--count", "3", "--output", "framed")
    assert c.wait() == 0, c.stderr
    out = c.stdout
    assert out == b"".join(f"{len(m):<10}".encode() + m for m in
                           [b"Welcome to the server!", "ünïcode ✓".encode(), b"\x00\xffbinary"])
    assert server.paths == ["/live"]


def test_send_over_wss_delivers_each_message_and_closes_cleanly(procs, pki, wss):
    _, files = pki
    server = wss()
    s = procs.framecast("send", f"wss://localhost:{server.port}/", "--tls-ca", files["ca"],
                        "one", "twö")
    assert s.wait() == 0, s.stderr
    assert server.closed.wait(DEADLINE)
    assert server.received == ["one", "twö"]


def test_an_unverified_wss_server_is_exit_10_with_the_reason(procs, pki, wss):
    _, files = pki
    server = wss(["never seen"])
    c = procs.framecast("connect", f"wss://127.0.0.1:{server.port}/", "--tls-ca", files["other_ca"],
                        "--count", "1")
    assert c.wait() == 10, c.stderr
    assert b"server certificate not verified: unable to get local issuer certificate" in c.stderr
    assert c.stdout == b""


def test_tls_insecure_applies_to_wss(procs, pki, wss):
    server = wss(["hello"])
    c = procs.framecast("connect", f"wss://127.0.0.1:{server.port}/", "--tls-insecure",
                        "--count", "1")
    assert c.wait() == 0, c.stderr
    assert c.stdout == b"hello\n"


def test_tls_with_a_plain_ws_url_says_to_write_wss(procs):
    c = procs.framecast("connect", "ws://127.0.0.1:9/", "--tls", "--count", "1")
    assert c.wait() != 0
    assert b"for WebSocket over TLS write wss://" in c.stderr


def test_tls_options_without_tls_or_wss_are_refused(procs, pki):
    _, files = pki
    c = procs.framecast("connect", "127.0.0.1:9", "--tls-ca", files["ca"], "--count", "1")
    assert c.wait() != 0
    assert b"need --tls (or a wss:// URL)" in c.stderr


# --- serve --ws --ws-tls: wss:// on the gateway with the server's certificate ----------------

@pytest.fixture
def wss_serve(procs, pki, tmp_path):
    ca, files = pki
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))

    def start(*args):
        server, port = procs.serve("--ws", "127.0.0.1:0", "--ws-tls", "--tls-cert",
                                   tmp_path / "cert.pem", "--tls-key", tmp_path / "key.pem", *args)
        m = server.wait_for(rb"websocket on wss://127\.0\.0\.1:(\d+)/", stream="out")
        return server, port, int(m.group(1))
    return start


def client_ssl(files):
    ctx = ssl.create_default_context(cafile=str(files["ca"]))
    return ctx


def test_python_websockets_reads_the_stream_over_wss(pki, wss_serve):
    _, files = pki
    server, _, wsport = wss_serve("--interval", "0.05")

    async def main():
        async with websockets.connect(f"wss://127.0.0.1:{wsport}/", ssl=client_ssl(files),
                                      open_timeout=DEADLINE) as ws:
            first = await asyncio.wait_for(ws.recv(), DEADLINE)
            second = await asyncio.wait_for(ws.recv(), DEADLINE)
            return first, second
    first, second = asyncio.run(main())
    assert first == "Welcome to the server!"
    assert second.startswith("The time is ")


def test_framecast_connect_wss_to_serve_ws_tls_and_a_plaintext_client_is_refused(procs, pki, wss_serve):
    _, files = pki
    server, _, wsport = wss_serve("--interval", "0.05")
    # Plain ws:// to the wss port: the TLS handshake fails, logged; the server goes on.
    plain = procs.framecast("connect", f"ws://127.0.0.1:{wsport}/", "--count", "1", "--timeout", "3")
    assert plain.wait() != 0
    wait_for_log(server, rb"websocket 127\.0\.0\.1:\d+: TLS handshake failed")
    c = procs.framecast("connect", f"wss://127.0.0.1:{wsport}/", "--tls-ca", files["ca"],
                        "--count", "2")
    assert c.wait() == 0, c.stderr
    lines = c.stdout.decode().splitlines()
    assert lines[0] == "Welcome to the server!" and lines[1].startswith("The time is ")


def test_the_page_is_served_over_https(pki, wss_serve):
    _, files = pki
    _, _, wsport = wss_serve()
    body = urllib.request.urlopen(f"https://127.0.0.1:{wsport}/framecast.js",
                                  context=client_ssl(files), timeout=DEADLINE).read()
    assert b"Framecast" in body


def test_sighup_reloads_the_wss_certificate_for_new_connections_only(procs, pki, wss_serve, tmp_path):
    _, files = pki
    server, _, wsport = wss_serve("--interval", "0.05")

    async def first_two(ctx):
        async with websockets.connect(f"wss://127.0.0.1:{wsport}/", ssl=ctx,
                                      open_timeout=DEADLINE) as ws:
            return [await asyncio.wait_for(ws.recv(), DEADLINE) for _ in range(2)]

    async def main():
        old = await websockets.connect(f"wss://127.0.0.1:{wsport}/", ssl=client_ssl(files),
                                       open_timeout=DEADLINE)
        assert await asyncio.wait_for(old.recv(), DEADLINE) == "Welcome to the server!"
        # A new CA and certificate in the same files, then SIGHUP.
        ca2 = trustme.CA()
        cert2 = ca2.issue_cert("127.0.0.1")
        cert2.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
        cert2.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
        ca2.cert_pem.write_to_path(str(tmp_path / "ca2.pem"))
        server.signal(signal.SIGHUP)
        wait_for_log(server, rb"SIGHUP: wss:// certificate reloaded")
        got = await first_two(ssl.create_default_context(cafile=str(tmp_path / "ca2.pem")))
        assert got[0] == "Welcome to the server!" and got[1].startswith("The time is ")
        with pytest.raises(ssl.SSLCertVerificationError):
            await first_two(client_ssl(files))
        # The connection made before the reload still streams.
        assert (await asyncio.wait_for(old.recv(), DEADLINE)).startswith("The time is ")
        await old.close()
    asyncio.run(main())
    # A broken key: the reload is refused, the listener keeps its certificate.
    (tmp_path / "key.pem").write_text("not a key")
    server.signal(signal.SIGHUP)
    wait_for_log(server, rb"SIGHUP: wss:// certificate not reloaded, keeping the previous one")


def test_ws_tls_needs_a_certificate():
    out = subprocess.run([BIN, "serve", "--ws", "127.0.0.1:0", "--ws-tls"], capture_output=True,
                         timeout=DEADLINE)
    assert out.returncode != 0
    assert b"--ws-tls requires --tls-cert" in out.stderr
