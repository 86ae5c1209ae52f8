"""The clients over TLS (`connect/send/chat --tls ...`) and with a token (`--token FILE`),
against `serve --tls-cert ... [--auth jwt]`; certificates made by the test (python3-trustme).
Each verification failure exits 10 naming the reason."""
import datetime
import time

import pytest

from framecast_test import DEADLINE, FrameReader, wait_for_client, wait_for_log

trustme = pytest.importorskip("trustme")
jwt = pytest.importorskip("jwt")

SECRET = "a-shared-secret-of-at-least-32-bytes!"


@pytest.fixture
def pki(tmp_path):
    ca = trustme.CA()
    files = {k: tmp_path / f"{k}.pem" for k in ("ca", "cert", "key", "client", "expired_cert",
                                                 "expired_key", "other_ca")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.issue_cert("alice").private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    old = ca.issue_cert("127.0.0.1", not_after=datetime.datetime(2020, 1, 1))
    old.cert_chain_pems[0].write_to_path(str(files["expired_cert"]))
    old.private_key_pem.write_to_path(str(files["expired_key"]))
    trustme.CA().cert_pem.write_to_path(str(files["other_ca"]))
    return files


def serve_tls(procs, files, *args, cert="cert", key="key", **kw):
    return procs.serve("--tls-cert", files[cert], "--tls-key", files[key], *args, **kw)


def test_connect_reads_the_time_stream_over_tls(procs, pki):
    _, port = serve_tls(procs, pki, "--interval", "0.05")
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        "--count", "3")
    assert c.wait() == 0, c.stderr
    lines = c.stdout.decode().splitlines()
    assert lines[0] == "Welcome to the server!" and lines[2].startswith("The time is ")


def test_records_read_ahead_are_all_delivered_before_the_stream_goes_quiet(procs, pki):
    """The TLS clients read ahead (one recv takes several records). Records that arrived in
    the same read as others must reach the client at once, not wait for more bytes from a
    server that has gone quiet: 2,000 small messages, then silence, with the input held open."""
    import os
    r, w = os.pipe()
    srv, port = serve_tls(procs, pki, "--source", "stdin", "--welcome", "", "--wait-for", "1",
                          stdin=r)
    os.close(r)
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        "--count", "2000")
    try:  # --wait-for 1: the source starts once the client is in
        os.write(w, b"".join(b"line %d\n" % i for i in range(1, 2001)))
        assert c.wait() == 0, c.stderr  # the input is still open: the server says no more
        assert c.stdout.decode().splitlines() == [f"line {i}" for i in range(1, 2001)]
    finally:
        os.close(w)


@pytest.mark.parametrize("case, extra, cert, reason", [
    ("unknown CA", ["--tls-ca", "other_ca"], "cert", b"unable to get local issuer certificate"),
    ("expired", ["--tls-ca", "ca"], "expired_cert", b"certificate has expired"),
    ("name mismatch", ["--tls-ca", "ca", "--tls-server-name", "other.example"], "cert",
     b"hostname mismatch"),
])
def test_a_server_that_is_not_verified_is_exit_10_with_the_reason(procs, pki, case, extra, cert,
                                                                   reason):
    key = "expired_key" if cert == "expired_cert" else "key"
    _, port = serve_tls(procs, pki, cert=cert, key=key)
    args = [pki[a] if a in pki else a for a in extra]
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", *args, "--count", "1")
    assert c.wait() == 10, (case, c.stderr)
    assert b"server certificate not verified: " + reason in c.stderr, case


def test_insecure_skips_verification_only_when_asked(procs, pki):
    _, port = serve_tls(procs, pki)
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-insecure", "--count", "1")
    assert c.wait() == 0, c.stderr
    assert c.stdout == b"Welcome to the server!\n"


def test_tls_to_a_plaintext_server_is_exit_10(procs, pki):
    server, port = procs.serve("--publish", "--welcome", "")
    c = procs.framecast("send", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"], "hello",
                        "--connect-timeout", "3")
    assert c.wait() == 10, c.stderr
    assert b"plaintext server" in c.stderr


def test_mutual_tls_client_certificate_and_send(procs, pki):
    server, port = serve_tls(procs, pki, "--tls-client-ca", pki["ca"], "--publish", "--welcome", "")
    sub = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                          "--tls-cert", pki["client"], "--count", "2")
    wait_for_log(server, rb"connected \(1 clients\)")
    s = procs.framecast("send", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        "--tls-cert", pki["client"], "one", "two")
    assert s.wait() == 0, s.stderr
    assert sub.wait() == 0, sub.stderr
    assert sub.stdout == b"one\ntwo\n"
    # Without a client certificate the server refuses it.
    bad = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                          "--count", "1", "--timeout", "3")
    assert bad.wait() != 0
    wait_for_log(server, rb"client certificate required")


def test_token_file_authenticates_connect_and_chat(procs, pki, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    token = tmp_path / "token"
    token.write_text(jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, SECRET,
                                algorithm="HS256") + "\n")
    server, port = serve_tls(procs, pki, "--auth", "jwt", "--jwt-key", secret, "--interval", "0.05")
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        "--token", token, "--count", "2")
    assert c.wait() == 0, c.stderr
    assert c.stdout.startswith(b"Welcome to the server!\n")
    wait_for_log(server, rb"connected as alice")
    # A refused token: the client prints the server's reason and exits non-zero.
    expired = tmp_path / "expired"
    expired.write_text(jwt.encode({"sub": "alice", "exp": 1}, SECRET, algorithm="HS256"))
    c = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        "--token", expired, "--count", "1")
    assert c.wait() == 11, c.stderr
    assert b"auth refused: token expired" in c.stderr
    assert c.stdout == b""  # nothing of the stream
    # A token to a server without --auth: told, not silently used as a message.
    _, plain = procs.serve()
    c = procs.framecast("connect", f"127.0.0.1:{plain}", "--token", token, "--count", "1")
    assert c.wait() == 11
    assert b"did not answer the token" in c.stderr


def test_websocket_clients_authenticate_too(procs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    token = tmp_path / "token"
    token.write_text(jwt.encode({"sub": "bob", "exp": int(time.time()) + 600}, SECRET,
                                algorithm="HS256"))
    server, _ = procs.serve("--auth", "jwt", "--jwt-key", secret, "--ws", "127.0.0.1:0",
                            "--interval", "0.05")
    ws_port = int(server.wait_for(rb"websocket on ws://127\.0\.0\.1:(\d+)", stream="out").group(1))
    c = procs.framecast("connect", f"ws://127.0.0.1:{ws_port}/", "--token", token, "--count", "2")
    assert c.wait() == 0, c.stderr
    assert c.stdout.startswith(b"Welcome to the server!\n")
    wait_for_log(server, rb"connected as bob")
    # A first message that is not a token: the gateway's client is refused like a TCP one.
    c = procs.framecast("send", f"ws://127.0.0.1:{ws_port}/", "hello")
    c.wait()
    wait_for_log(server, rb"refused: not a JWT")


def test_large_messages_both_ways_over_tls_arrive_whole_and_send_ends_cleanly(procs, pki, tmp_path):
    """The clients read and write through TLS themselves (no bridge): a 6 MiB message is many
    records and many socket-fulls each way, so writes wait for the socket and reads take a
    frame from hundreds of records; `send` then closes with close_notify (exit 0 only when the
    server saw a clean end)."""
    import hashlib
    import os
    big = [os.urandom(6 << 20), b"small", os.urandom(3 << 20)]
    files = []
    for i, blob in enumerate(big):
        f = tmp_path / f"m{i}"
        f.write_bytes(blob)
        files += ["--file", str(f)]
    server, port = serve_tls(procs, pki, "--publish", "--welcome", "", "--max-message", "8MiB",
                             "--client-buffer", "32MiB")
    sub = procs.framecast("connect", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                          "--count", "3", "--max-message", "8MiB", "-o", "framed")
    wait_for_log(server, rb"connected \(1 clients\)")
    s = procs.framecast("send", f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        "--max-message", "8MiB", *files)
    assert s.wait() == 0, s.stderr
    assert sub.wait() == 0, sub.stderr
    out, got = sub.stdout, []
    while out:
        n = int(out[:10])
        got.append(out[10:10 + n])
        out = out[10 + n:]
    assert [hashlib.sha256(g).hexdigest() for g in got] == \
        [hashlib.sha256(b).hexdigest() for b in big]


@pytest.mark.parametrize("command", [["connect", "--count", "2"], ["send", "one", "two"]])
def test_tls_clients_end_with_close_notify(procs, pki, command):
    """A TLS client ends its connection with close_notify, so a peer (or a proxy such as stunnel
    or nginx) sees a clean end, not a truncation. The peer here is Python's ssl module, written
    from the tutorial's framing: it serves two frames, then reads to the end of the stream;
    recv() returns b"" after close_notify and raises SSLEOFError without one."""
    import socket
    import ssl
    import threading
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki["cert"]), str(pki["key"]))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(DEADLINE)
    port = listener.getsockname()[1]
    outcome = {}

    def peer():
        conn, _ = listener.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(DEADLINE)
            tls.sendall(b"".join(f"{len(m):<10}".encode() + m for m in (b"hello", b"world")))
            try:
                while tls.recv(65536):
                    pass
                outcome["end"] = "close_notify"
            except ssl.SSLEOFError:
                outcome["end"] = "truncated"

    t = threading.Thread(target=peer, daemon=True)
    t.start()
    c = procs.framecast(command[0], f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        *command[1:], "--settle", "0", "--close-timeout", "1") \
        if command[0] == "send" else \
        procs.framecast(command[0], f"127.0.0.1:{port}", "--tls", "--tls-ca", pki["ca"],
                        *command[1:])
    c.wait()
    t.join(DEADLINE)
    listener.close()
    assert outcome.get("end") == "close_notify", (outcome, c.stderr)
