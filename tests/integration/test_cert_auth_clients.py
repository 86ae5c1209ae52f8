"""framecast's own clients under `serve --auth cert`: a server that refuses the client
certificate's identity says so unasked, as the first frame(s) in the mode's shape; connect,
send, chat, sub and pub recognise the documented notice and exit 11 (auth refused) with the
server's reason on stderr, exactly as for a refused token. The real binary on both ends,
certificates made by the test (python3-trustme). Loopback only, port 0, every wait bounded."""
import subprocess

import pytest

from framecast_test import wait_for_log
from test_cert_auth import PERMISSIONS, pki, serve  # noqa: F401 (a fixture)

REASON = (b"auth refused: certificate identity 'carol.example.org' is not in the permissions "
          b"table (and it has no \"*\" entry)")


def tls(pki, pem):
    return ["--tls", "--tls-ca", pki["ca"], "--tls-cert", pem, "--tls-key", pem]


def refused(p):
    assert p.wait() == 11, p.stderr
    assert b"127.0.0.1:" in p.stderr and REASON in p.stderr, p.stderr
    return p


@pytest.mark.parametrize("mode, client", [
    ([], ["connect", "{target}", "--count", "1"]),
    ([], ["connect", "{target}", "-o", "raw"]),
    (["--publish"], ["send", "{target}", "hello"]),
    (["--chat"], ["chat", "{target}", "--name", "carol.example.org"]),
    (["--channels"], ["sub", "{target}", "prices.*"]),
    (["--channels"], ["pub", "{target}", "prices.eu", "101"]),
])
def test_a_refused_certificate_is_exit_11_with_the_reason(procs, pki, tmp_path, mode, client):
    server, port = serve(procs, pki, tmp_path, *mode, config=PERMISSIONS)
    carol = pki["client"]("carol.example.org")
    args = [a.format(target=f"127.0.0.1:{port}") for a in client]
    p = refused(procs.framecast(*args, *tls(pki, carol), stdin=subprocess.PIPE))
    assert p.stdout == b""  # the notice is not shown as a message
    wait_for_log(server, rb"client \S+ refused: certificate identity 'carol\.example\.org'")


@pytest.mark.parametrize("output, expected", [
    ("lines", b"Welcome to the server!\n"),
    ("framed", b"22        Welcome to the server!"),  # streaming mode: held, then handed on
])
def test_an_admitted_certificate_is_not_mistaken_for_a_refusal(procs, pki, tmp_path, output,
                                                               expected):
    """The first message passes through, once: alice (in the table) reads the stream."""
    server, port = serve(procs, pki, tmp_path, config=PERMISSIONS)
    alice = pki["client"]("alice@example.com")
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--count", "1", "-o", output,
                        *tls(pki, alice))
    assert c.wait() == 0, c.stderr
    assert c.stdout == expected


def test_over_wss_too(procs, pki, tmp_path):
    server, port = serve(procs, pki, tmp_path, "--ws", "127.0.0.1:0", "--ws-tls", config=PERMISSIONS)
    wsport = int(server.wait_for(rb"websocket on wss://127\.0\.0\.1:(\d+)/", stream="out").group(1))
    carol = pki["client"]("carol.example.org")
    refused(procs.framecast("connect", f"wss://127.0.0.1:{wsport}/", "--tls-ca", pki["ca"],
                            "--tls-cert", carol, "--tls-key", carol))
