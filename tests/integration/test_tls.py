"""TLS on the server's listener (`serve --tls-cert/--tls-key/--tls-client-ca`), checked with
Python's own `ssl` module as the peer and certificates made by the test (python3-trustme).
Loopback only, port 0, every wait bounded."""
import hashlib
import os
import signal
import socket
import ssl
import threading

import pytest

from framecast_test import DEADLINE, FrameReader, frame, metrics, wait_for_client, wait_for_log

trustme = pytest.importorskip("trustme")


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, as files."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("alice@example.com", common_name="alice")
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "client": tmp_path / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(files["cert"]), append=True)
    server.private_key_pem.write_to_path(str(files["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return ca, files


def tls_client(port, ca_file, client_pem=None, rcvbuf=None):
    """A Python TLS client that verifies the server (chain and name), as a careful client does.
    `rcvbuf`: a small kernel receive buffer (set before connecting, so the window is small)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if client_pem:
        ctx.load_cert_chain(str(client_pem))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(DEADLINE)
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_until_closed(sock):
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def tls_args(files, *more):
    return ["--tls-cert", files["cert"], "--tls-key", files["key"], *more]


def test_python_ssl_client_reads_the_time_stream(procs, pki):
    _, files = pki
    server, port = procs.serve(*tls_args(files), "--interval", "0.05")
    with tls_client(port, files["ca"]) as s:
        assert s.version() in ("TLSv1.3", "TLSv1.2")
        r = FrameReader(s)
        assert r.read() == b"Welcome to the server!"
        assert r.read().startswith(b"The time is ")


def test_a_plaintext_client_is_closed_with_a_reason(procs, pki):
    _, files = pki
    server, port = procs.serve(*tls_args(files), "--tls-handshake-timeout", "0.5",
                               "--metrics", "127.0.0.1:0")
    # One that talks first (a publisher): not a TLS record.
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(frame("hello"))
        wait_for_log(server, rb"not a TLS client \(plaintext on a TLS port\?\)")
        assert b"Welcome" not in read_until_closed(s)  # at most a TLS alert
    # One that waits for the welcome, as the tutorial's client does: closed at the deadline,
    # having seen nothing of the stream.
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        wait_for_log(server, rb"no TLS handshake within the deadline")
        assert read_until_closed(s) == b""
    assert metrics(server)["framecast_tls_handshake_failures_total"] >= 2


def test_mutual_tls_requires_a_certificate_from_the_client_ca(procs, pki, tmp_path):
    ca, files = pki
    server, port = procs.serve(*tls_args(files, "--tls-client-ca", files["ca"]))
    # No certificate: refused during the handshake (TLS 1.3 reports it on the first read).
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        with tls_client(port, files["ca"]) as s:
            FrameReader(s).read()
    wait_for_log(server, rb"client certificate required")
    # A certificate from another CA: refused too.
    other = trustme.CA().issue_cert("mallory")
    other_pem = tmp_path / "other.pem"
    other.private_key_and_cert_chain_pem.write_to_path(str(other_pem))
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError)):
        with tls_client(port, files["ca"], other_pem) as s:
            FrameReader(s).read()
    wait_for_log(server, rb"client certificate refused: unable to get local issuer certificate")
    # The CA's client: served.
    with tls_client(port, files["ca"], files["client"]) as s:
        assert FrameReader(s).read() == b"Welcome to the server!"


def test_large_messages_cross_intact_with_slow_readers(procs, pki):
    """Publish mode over TLS: 1 MiB messages through a subscriber that reads slowly, so the
    server's writes meet a full socket again and again (the ciphertext-held-back path)."""
    _, files = pki
    server, port = procs.serve(*tls_args(files), "--publish", "--max-message", "2MiB",
                               "--welcome", "")
    sub = tls_client(port, files["ca"], rcvbuf=8192)
    wait_for_client(server, sub)
    pub = tls_client(port, files["ca"])
    wait_for_client(server, pub)
    payloads = [os.urandom(1 << 20) for _ in range(4)] + [b"", b"x" * 70000]
    # The publisher in a thread: the server stops reading it while the subscriber lags.
    sender = threading.Thread(target=lambda: [pub.sendall(frame(p)) for p in payloads])
    sender.start()
    r = FrameReader(sub, bufsize=4096)
    for p in payloads:
        got = r.read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(p).digest()
    sender.join(timeout=DEADLINE)
    pub.close()
    sub.close()


def test_sighup_reloads_the_certificate_for_new_clients_only(procs, pki, tmp_path):
    _, files = pki
    server, port = procs.serve(*tls_args(files), "--interval", "0.05")
    old = tls_client(port, files["ca"])
    old_reader = FrameReader(old)
    assert old_reader.read() == b"Welcome to the server!"
    # A new CA and certificate in the same files, then SIGHUP.
    ca2 = trustme.CA()
    cert2 = ca2.issue_cert("127.0.0.1")
    cert2.cert_chain_pems[0].write_to_path(str(files["cert"]))
    cert2.private_key_pem.write_to_path(str(files["key"]))
    ca2_file = tmp_path / "ca2.pem"
    ca2.cert_pem.write_to_path(str(ca2_file))
    server.signal(signal.SIGHUP)
    wait_for_log(server, rb"SIGHUP: TLS certificate reloaded")
    with tls_client(port, ca2_file) as s:
        assert FrameReader(s).read() == b"Welcome to the server!"
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_client(port, files["ca"])
    # The client connected before the reload still streams.
    assert old_reader.read().startswith(b"The time is ")
    old.close()
    # A broken file: the reload is refused and the server keeps serving with what it had.
    files["key"].write_text("not a key")
    server.signal(signal.SIGHUP)
    wait_for_log(server, rb"SIGHUP: TLS not reloaded, keeping the previous certificate: "
                         rb"cannot load the TLS key")
    with tls_client(port, ca2_file) as s:
        assert FrameReader(s).read() == b"Welcome to the server!"


def test_a_key_that_does_not_match_is_a_usage_error(procs, pki, tmp_path):
    _, files = pki
    other_key = tmp_path / "other.key"
    trustme.CA().issue_cert("x").private_key_pem.write_to_path(str(other_key))
    p = procs.framecast("serve", "--listen", "127.0.0.1:0", "--tls-cert", files["cert"],
                        "--tls-key", other_key)
    assert p.wait() == 2
    assert b"does not match the certificate" in p.stderr
