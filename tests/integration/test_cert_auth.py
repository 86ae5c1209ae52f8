"""Identities from TLS client certificates (`serve --auth cert`, mutual TLS): no token, the
client is who its verified certificate says (first email/DNS/URI subjectAltName, else CN), with
the permissions of the config file's [permissions] table. Certificates made by the test
(python3-trustme), Python's `ssl` as the client. Loopback only, port 0, every wait bounded."""
import datetime
import ssl

import pytest

from framecast_test import FrameReader, frame, metrics, wait_for_log
from test_tls import read_until_closed, tls_client

trustme = pytest.importorskip("trustme")

PERMISSIONS = """
[permissions."alice@example.com"]
publish.allow = ["prices.>"]
publish.deny = ["prices.secret"]
subscribe.allow = ["prices.*"]
"""
DEFAULT = """
[permissions."*"]          # every other verified certificate
subscribe.allow = ["news.>"]
publish.allow = []
"""


@pytest.fixture
def pki(tmp_path):
    """A CA, the server's certificate, and clients' key+certificate files made on demand."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key",
             "ca_obj": ca}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))

    def client(*names, common_name=None, not_after=None):
        path = tmp_path / f"client-{len(list(tmp_path.iterdir()))}.pem"
        kw = {"not_after": not_after} if not_after else {}
        ca.issue_cert(*names, common_name=common_name, **kw) \
            .private_key_and_cert_chain_pem.write_to_path(str(path))
        return path

    files["client"] = client
    return files


def serve(procs, pki, tmp_path, *args, config=PERMISSIONS + DEFAULT):
    path = tmp_path / "framecast.toml"
    path.write_text(config)
    return procs.serve("--config", path, "--tls-cert", pki["cert"], "--tls-key", pki["key"],
                       "--tls-client-ca", pki["ca"], "--auth", "cert", *args)


def pair(reader):
    return reader.read(), reader.read()


def test_the_certificate_is_the_identity_and_the_table_its_permissions(procs, pki, tmp_path):
    """alice's entry applies to alice (her email SAN, not her CN); bob, not in the table, gets
    the "*" entry. Refusals are the documented $sys.error notices; the connection stays."""
    server, port = serve(procs, pki, tmp_path, "--channels")
    alice_cert = pki["client"]("alice@example.com", common_name="alice")
    alice = tls_client(port, pki["ca"], alice_cert)
    wait_for_log(server, rb"client \S+ connected as alice@example\.com")
    bob = tls_client(port, pki["ca"], pki["client"]("bob.example.org"))
    wait_for_log(server, rb"client \S+ connected as bob\.example\.org")
    ar, br = FrameReader(alice), FrameReader(bob)
    alice.sendall(b"".join(frame(f) for f in [
        "SUB prices.*", "SUB news.>", "PUB prices.secret", "dropped", "PING a"]))
    assert pair(ar) == (b"$sys.ok", b"SUB prices.*")
    assert pair(ar) == (b"$sys.error", b"permission-denied SUB news.>: not allowed by the "
                        b"client's certificate identity (the [permissions] table) (subscribe "
                        b"permissions)")
    assert pair(ar)[1].startswith(b"permission-denied PUB prices.secret: ")
    assert pair(ar) == (b"$sys.pong", b"a")
    bob.sendall(b"".join(frame(f) for f in ["SUB news.>", "PUB news.eu", "dropped", "PING b"]))
    assert pair(br) == (b"$sys.ok", b"SUB news.>")
    assert pair(br)[1].startswith(b"permission-denied PUB news.eu: ")
    assert pair(br) == (b"$sys.pong", b"b")
    # Alice's allowed publish reaches alice's other connection (the same certificate).
    with tls_client(port, pki["ca"], alice_cert) as again:
        again.sendall(frame("SUB prices.*"))
        assert pair(FrameReader(again)) == (b"$sys.ok", b"SUB prices.*")
        alice.sendall(frame("PUB prices.eu") + frame("101"))
        assert pair(FrameReader(again)) == (b"prices.eu", b"101")
    alice.close()
    bob.close()


def test_without_a_default_an_identity_not_listed_is_refused(procs, pki, tmp_path):
    """Refused in the mode's shape: in channels mode a $sys.error pair, then the close."""
    server, port = serve(procs, pki, tmp_path, "--channels", "--metrics", "127.0.0.1:0",
                         config=PERMISSIONS)
    with tls_client(port, pki["ca"], pki["client"]("carol.example.org", common_name="carol")) as s:
        r = FrameReader(s)
        assert pair(r) == (b"$sys.error", b"auth-refused certificate identity "
                           b"'carol.example.org' is not in the permissions table (and it has no "
                           b"\"*\" entry)")
        assert read_until_closed(s) == b""
    wait_for_log(server, rb"client \S+ refused: certificate identity 'carol.example.org'")
    assert metrics(server)["framecast_auth_refused_total"] == 1


def test_a_tutorial_client_over_tls_reads_the_stream_until_its_certificate_expires(procs, pki, tmp_path):
    """No token: the tutorial's framing, over TLS with a client certificate, just works; at the
    certificate's notAfter the client is told and closed, as with an expired token."""
    server, port = serve(procs, pki, tmp_path, "--interval", "0.1", "--metrics", "127.0.0.1:0",
                         config="")  # no table: every verified certificate may do anything
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
    with tls_client(port, pki["ca"], pki["client"]("dave@example.com", not_after=soon)) as s:
        r = FrameReader(s)
        assert r.read() == b"Welcome to the server!"
        frames = []
        while not frames or frames[-1].startswith(b"The time is "):
            frames.append(r.read())
        assert frames[-1] == b"framecast: certificate expired" and len(frames) > 5
        assert read_until_closed(s) == b""
    wait_for_log(server, rb"client \S+ disconnected: token expired")
    assert metrics(server)["framecast_auth_expired_total"] == 1


def test_in_chat_the_username_is_the_certificate_identity(procs, pki, tmp_path):
    server, port = serve(procs, pki, tmp_path, "--chat", config="")
    cert = pki["client"]("alice@example.com")
    with tls_client(port, pki["ca"], cert) as s:
        s.sendall(frame("mallory"))
        assert read_until_closed(s) == b""
    wait_for_log(server, rb"username 'mallory' is not the certificate's identity 'alice@example.com'")
    with tls_client(port, pki["ca"], cert) as s, \
            tls_client(port, pki["ca"], pki["client"]("bob@example.com")) as bob:
        bob.sendall(frame("bob@example.com"))
        wait_for_log(server, rb"bob@example.com joined")
        s.sendall(frame("alice@example.com") + frame("hello"))
        assert pair(FrameReader(bob)) == (b"alice@example.com", b"hello")


def test_a_client_without_a_certificate_is_refused_at_the_handshake(procs, pki, tmp_path):
    server, port = serve(procs, pki, tmp_path)
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        with tls_client(port, pki["ca"]) as s:
            s.sendall(frame("hello"))
            read_until_closed(s)
            raise ConnectionResetError  # TLS 1.3: the refusal may arrive as a plain close
    wait_for_log(server, rb"client certificate required \(--tls-client-ca\) but none was sent")


@pytest.mark.parametrize("args, config, error", [
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--auth", "cert"], "",
     rb"--auth cert needs mutual TLS: .*--tls-client-ca"),
    (["--auth", "cert"], "", rb"--auth cert needs mutual TLS"),
    (["--auth", "jwt"], "", rb"--auth jwt needs --jwt-key FILE"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{ca}"], PERMISSIONS,
     rb"\[permissions\] table is for certificate identities: it needs --auth cert"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{ca}", "--auth", "cert"],
     '\n[permissions."alice"]\npublish.allow = "prices.>"\n',
     rb"framecast\.toml:2: permissions\.\"alice\"\.publish\.allow is not an array of patterns"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{ca}", "--auth", "cert"],
     '\n\n[permissions."*"]\npublish.allow = ["a..b"]\n',
     rb"framecast\.toml:3: permissions\.\"\*\"\.publish\.allow holds something that is not a "
     rb"pattern: \"a\.\.b\""),
])
def test_what_auth_cert_needs_is_a_usage_error(procs, pki, tmp_path, args, config, error):
    path = tmp_path / "framecast.toml"
    path.write_text(config)
    p = procs.framecast("serve", "--listen", "127.0.0.1:0", "--config", path,
                        *[a.format(**pki) if a.startswith("{") else a for a in args])
    assert p.wait() == 2
    import re
    assert re.search(error, p.stderr), p.stderr


def test_the_identity_rule_first_email_dns_or_uri_name_else_the_cn(procs, pki, tmp_path):
    """An IP subjectAltName is skipped for the DNS name after it; a certificate without such a
    name is its CN (made with the openssl CLI: trustme always writes subjectAltNames)."""
    import subprocess
    server, port = serve(procs, pki, tmp_path, config="")
    with tls_client(port, pki["ca"], pki["client"]("10.0.0.1", "frank.example.org", common_name="f")) as s:
        assert FrameReader(s).read() == b"Welcome to the server!"
    wait_for_log(server, rb"client \S+ connected as frank\.example\.org \(")
    ca_key = tmp_path / "ca.key"
    pki["ca_obj"].private_key_pem.write_to_path(str(ca_key))
    run = lambda cmd: subprocess.run(["bash", "-c", cmd], cwd=tmp_path, check=True,
                                     capture_output=True, timeout=30)
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /O=x/CN=erin "
        "-keyout erin.key -out erin.csr && openssl x509 -req -in erin.csr -CA ca.pem "
        "-CAkey ca.key -CAcreateserial -days 1 -out erin.pem && cat erin.key >> erin.pem")
    with tls_client(port, pki["ca"], tmp_path / "erin.pem") as s:
        assert FrameReader(s).read() == b"Welcome to the server!"
    wait_for_log(server, rb"client \S+ connected as erin \(")


def test_a_refused_client_that_already_talked_still_reads_why(procs, pki, tmp_path):
    """A chat client sends its name at once; refused (not in the table), it still reads the
    notice (the server drops its input before closing, rather than resetting the connection)."""
    server, port = serve(procs, pki, tmp_path, "--chat", config=PERMISSIONS)
    with tls_client(port, pki["ca"], pki["client"]("carol.example.org")) as s:
        s.sendall(frame("carol.example.org"))
        wait_for_log(server, rb"client \S+ refused: certificate identity")
        s.sendall(frame("hello") * 100)  # to a closed socket, this would bring a reset
        assert pair(FrameReader(s)) == (b"framecast", b"framecast: auth refused: certificate "
                                        b"identity 'carol.example.org' is not in the permissions "
                                        b"table (and it has no \"*\" entry)")


def test_sighup_reloads_the_permissions_table_for_new_connections(procs, pki, tmp_path):
    """SIGHUP reads [permissions] again: a new connection gets the new entry, one connected
    before keeps what it was admitted with; a bad file (or one without the table) is logged
    with the file and the problem and the table in force stays."""
    import signal
    denied = '[permissions."alice@example.com"]\npublish.allow = ["news.>"]\n'
    server, port = serve(procs, pki, tmp_path, "--channels", config=denied)
    alice_cert = pki["client"]("alice@example.com")
    config = tmp_path / "framecast.toml"

    def publish(s):
        s.sendall(frame("PUB prices.eu") + frame("101") + frame("PING p"))
        return pair(FrameReader(s))

    old = tls_client(port, pki["ca"], alice_cert)
    assert publish(old)[1].startswith(b"permission-denied PUB prices.eu: ")
    config.write_text('[permissions."alice@example.com"]\npublish.allow = ["prices.>"]\n')
    server.signal(signal.SIGHUP)
    wait_for_log(server, rb"SIGHUP: \[permissions\] reloaded \(1 entries\); new connections use it")
    with tls_client(port, pki["ca"], alice_cert) as new:
        assert publish(new) == (b"$sys.pong", b"p")
    assert publish(old)[1].startswith(b"permission-denied PUB prices.eu: ")
    old.close()
    for bad, why in [('[permissions."alice@example.com"]\npublish.allow = "prices.>"\n',
                      rb"framecast\.toml:1: permissions\.\"alice@example\.com\"\.publish\.allow "
                      rb"is not an array of patterns"),
                     ("[permissions\n", rb"framecast\.toml:1:\d+: "),
                     ("", rb"framecast\.toml has no \[permissions\] table any more")]:
        config.write_text(bad)
        server.signal(signal.SIGHUP)
        wait_for_log(server, rb"SIGHUP: \[permissions\] not reloaded, keeping the previous "
                     rb"table: \S*" + why)
        with tls_client(port, pki["ca"], alice_cert) as new:
            assert publish(new) == (b"$sys.pong", b"p")
