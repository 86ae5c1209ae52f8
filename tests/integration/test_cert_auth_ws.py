"""`serve --auth cert` on the WebSocket listener over TLS (`--ws --ws-tls`): a wss:// client is
who its verified client certificate says, with the [permissions] table's entry, exactly as a TCP
client with that certificate. The peer is python3-websockets over Python's ssl with certificates
made by the test (python3-trustme). Loopback only, port 0, every wait bounded."""
import asyncio
import ssl
import subprocess

import pytest

from framecast_test import BIN, DEADLINE, FrameReader, frame, wait_for_log
from test_cert_auth import DEFAULT, PERMISSIONS, pki  # noqa: F401 (a fixture)
from test_tls import tls_client

websockets = pytest.importorskip("websockets")


def serve_wss(procs, pki, tmp_path, *args, config=PERMISSIONS + DEFAULT):
    path = tmp_path / "framecast.toml"
    path.write_text(config)
    server, port = procs.serve("--config", path, "--tls-cert", pki["cert"], "--tls-key", pki["key"],
                               "--tls-client-ca", pki["ca"], "--auth", "cert", "--ws", "127.0.0.1:0",
                               "--ws-tls", *args)
    m = server.wait_for(rb"websocket on wss://127\.0\.0\.1:(\d+)/", stream="out")
    return server, port, int(m.group(1))


def client_ssl(pki, client_pem=None):
    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    if client_pem:
        ctx.load_cert_chain(str(client_pem))
    return ctx


def connect(wsport, ctx):
    return websockets.connect(f"wss://127.0.0.1:{wsport}/", ssl=ctx, open_timeout=DEADLINE)


async def recv_pair(ws):
    return (await asyncio.wait_for(ws.recv(), DEADLINE), await asyncio.wait_for(ws.recv(), DEADLINE))


def test_a_wss_client_is_its_certificate_identity_with_its_permissions(procs, pki, tmp_path):
    """alice over wss:// gets alice's entry (as over TCP): SUB news.> is refused, PUB prices.eu
    reaches a TCP subscriber with alice's certificate too."""
    server, port, wsport = serve_wss(procs, pki, tmp_path, "--channels")
    alice_cert = pki["client"]("alice@example.com", common_name="alice")

    async def main():
        async with connect(wsport, client_ssl(pki, alice_cert)) as ws:
            await ws.send("SUB news.>")
            assert await recv_pair(ws) == (
                "$sys.error", "permission-denied SUB news.>: not allowed by the client's "
                "certificate identity (the [permissions] table) (subscribe permissions)")
            await ws.send("SUB prices.*")
            assert await recv_pair(ws) == ("$sys.ok", "SUB prices.*")
            with tls_client(port, pki["ca"], alice_cert) as tcp:
                tcp.sendall(frame("SUB prices.*"))
                reader = FrameReader(tcp)
                assert (reader.read(), reader.read()) == (b"$sys.ok", b"SUB prices.*")
                await ws.send("PUB prices.secret")
                await ws.send("dropped")
                assert (await recv_pair(ws))[1].startswith("permission-denied PUB prices.secret: ")
                await ws.send("PUB prices.eu")
                await ws.send("101")
                assert (reader.read(), reader.read()) == (b"prices.eu", b"101")
    asyncio.run(main())
    wait_for_log(server, rb"client \S+ connected as alice@example\.com")


def test_a_wss_identity_not_admitted_is_told_then_closed_with_1008(procs, pki, tmp_path):
    """The documented notice as the first message(s), then close 1008 'authentication failed';
    stream mode: one message; channels mode: the $sys.error pair."""
    server, _, wsport = serve_wss(procs, pki, tmp_path, config=PERMISSIONS)
    carol = pki["client"]("carol.example.org")
    reason = ("certificate identity 'carol.example.org' is not in the permissions table (and it "
              "has no \"*\" entry)")

    async def refused():
        got = []
        async with connect(wsport, client_ssl(pki, carol)) as ws:
            with pytest.raises(websockets.exceptions.ConnectionClosedError):
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), DEADLINE))
            return got, ws.close_code, ws.close_reason
    assert asyncio.run(refused()) == (["framecast: auth refused: " + reason], 1008,
                                      "authentication failed")
    wait_for_log(server, rb"client \S+ refused: certificate identity 'carol\.example\.org'")
    server, _, wsport = serve_wss(procs, pki, tmp_path, "--channels", config=PERMISSIONS)
    assert asyncio.run(refused()) == (["$sys.error", "auth-refused " + reason], 1008,
                                      "authentication failed")


def test_a_wss_client_without_a_certificate_is_refused_by_tls(procs, pki, tmp_path):
    server, _, wsport = serve_wss(procs, pki, tmp_path)

    async def main():
        async with connect(wsport, client_ssl(pki)) as ws:
            await asyncio.wait_for(ws.recv(), DEADLINE)
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError, websockets.exceptions.WebSocketException)):
        asyncio.run(main())
    wait_for_log(server, rb"websocket 127\.0\.0\.1:\d+: TLS handshake failed: .*certificate")


def test_auth_cert_over_plain_ws_is_refused_at_start(pki, tmp_path):
    out = subprocess.run([BIN, "serve", "--listen", "127.0.0.1:0", "--ws", "127.0.0.1:0",
                          "--tls-cert", pki["cert"], "--tls-key", pki["key"], "--tls-client-ca",
                          pki["ca"], "--auth", "cert"], capture_output=True, timeout=DEADLINE)
    assert out.returncode == 2
    assert b"--auth cert with --ws needs --ws-tls: over plain ws:// no client certificate" in out.stderr
