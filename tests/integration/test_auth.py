"""Authentication (`serve --auth jwt`): the first frame is a JWT. Tokens are minted by the test
with PyJWT (Debian python3-jwt) and keys made with python3-cryptography, independently of the
server's libjwt. Loopback only, port 0, every wait bounded."""
import re
import time

import pytest

from framecast_test import FrameReader, connect, frame, metrics, wait_for_log

jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives import serialization  # noqa: E402 (after the skip)
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

SECRET = "a-shared-secret-of-at-least-32-bytes!"
REFUSED = b"framecast: auth refused: "


def token(key=SECRET, alg="HS256", sub="alice", ttl=600, **claims):
    body = {"sub": sub, "exp": int(time.time()) + (ttl or 0), **claims}
    if sub is None:
        del body["sub"]
    if ttl is None:
        del body["exp"]
    return jwt.encode(body, key, algorithm=alg)


def pem_private(k):
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def pem_public(k):
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "secret"
    p.write_text(SECRET + "\n")  # the trailing newline an editor adds is ignored
    return p


def read_all_frames(sock):
    """Every frame until the server closes."""
    r, out = FrameReader(sock), []
    while True:
        try:
            out.append(r.read())
        except (EOFError, ConnectionResetError):
            return out


def test_a_valid_token_is_a_client_that_gets_the_stream(procs, secret_file):
    server, port = procs.serve("--auth", "jwt", "--jwt-key", secret_file, "--interval", "0.05")
    with connect(port) as s:
        s.sendall(frame(token()))
        r = FrameReader(s)
        assert r.read() == b"framecast: auth ok"  # then the stream, as without auth
        assert r.read() == b"Welcome to the server!"
        assert r.read().startswith(b"The time is ")
    wait_for_log(server, rb"client \S+ connected as alice")


@pytest.mark.parametrize("what, tok, reason", [
    ("expired", lambda: token(ttl=-10), b"token expired"),
    ("bad signature", lambda: token(key="another-secret-that-is-long-enough!!"), b"bad signature"),
    ("alg none", lambda: jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, None,
                                    algorithm="none"), b"token algorithm none is not the server's HS256"),
    ("no exp", lambda: token(ttl=None), b"token has no expiry (exp)"),
    ("no sub", lambda: token(sub=None), b"token has no subject (sub)"),
    ("not a token", lambda: "hello", b"not a JWT"),
])
def test_a_bad_token_is_told_why_and_sees_nothing(procs, secret_file, what, tok, reason):
    server, port = procs.serve("--auth", "jwt", "--jwt-key", secret_file, "--interval", "0.05",
                               "--metrics", "127.0.0.1:0")
    with connect(port) as s:
        s.sendall(frame(tok()))
        frames = read_all_frames(s)
    assert frames == [REFUSED + reason], what
    wait_for_log(server, rb"client \S+ refused: " + re.escape(reason))
    assert metrics(server)["framecast_auth_refused_total"] == 1


def test_a_silent_client_is_refused_at_the_deadline(procs, secret_file):
    server, port = procs.serve("--auth", "jwt", "--jwt-key", secret_file)
    # --tls-handshake-timeout is the deadline of everything before a client is admitted; the
    # default is 10 s, so this test uses the refusal of a header that is not one instead.
    with connect(port) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        frames = read_all_frames(s)
    assert len(frames) == 1 and frames[0].startswith(REFUSED + b"the first frame is not a token")


def test_rs256_and_es256_public_keys_and_no_algorithm_confusion(procs, tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_pub, ec_pub = tmp_path / "rsa.pub", tmp_path / "ec.pub"
    rsa_pub.write_bytes(pem_public(rsa_key))
    ec_pub.write_bytes(pem_public(ec_key))
    rs, rs_port = procs.serve("--auth", "jwt", "--jwt-key", rsa_pub, "--jwt-alg", "RS256")
    es, es_port = procs.serve("--auth", "jwt", "--jwt-key", ec_pub, "--jwt-alg", "ES256")
    with connect(rs_port) as s:
        s.sendall(frame(token(pem_private(rsa_key), "RS256", sub="bob")))
        assert FrameReader(s).read() == b"framecast: auth ok"
    with connect(es_port) as s:
        s.sendall(frame(token(pem_private(ec_key), "ES256", sub="carol")))
        assert FrameReader(s).read() == b"framecast: auth ok"
    # HS256 signed with the RSA *public* key as the secret: the classic confusion attack.
    import hmac, hashlib, base64, json  # noqa: E401 (PyJWT refuses to do this, so by hand)

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "mallory", "exp": int(time.time()) + 600}).encode())
    sig = b64(hmac.new(pem_public(rsa_key), head + b"." + body, hashlib.sha256).digest())
    with connect(rs_port) as s:
        s.sendall(frame(head + b"." + body + b"." + sig))
        assert read_all_frames(s) == [REFUSED + b"token algorithm HS256 is not the server's RS256"]
    # A token for the other key type is refused too.
    with connect(rs_port) as s:
        s.sendall(frame(token(pem_private(ec_key), "ES256")))
        assert read_all_frames(s) == [REFUSED + b"token algorithm ES256 is not the server's RS256"]


def test_a_token_that_expires_while_connected_is_told_and_closed(procs, secret_file):
    server, port = procs.serve("--auth", "jwt", "--jwt-key", secret_file, "--interval", "0.1",
                               "--metrics", "127.0.0.1:0")
    with connect(port) as s:
        s.sendall(frame(token(ttl=2)))
        frames = read_all_frames(s)
    assert frames[:2] == [b"framecast: auth ok", b"Welcome to the server!"]
    assert frames[-1] == b"framecast: token expired"
    assert all(f.startswith(b"The time is ") for f in frames[2:-1])
    wait_for_log(server, rb"client \S+ disconnected: token expired")
    assert metrics(server)["framecast_auth_expired_total"] == 1


def test_a_short_secret_is_refused_at_start(procs, tmp_path):
    short = tmp_path / "short"
    short.write_text("password")
    p = procs.framecast("serve", "--listen", "127.0.0.1:0", "--auth", "jwt", "--jwt-key", short)
    assert p.wait() == 2
    assert b"shorter than 32 bytes" in p.stderr


def test_the_documented_python_client_is_let_in(procs, secret_file):
    """docs/security.md's Python example, run as written (its port replaced by the server's)."""
    import os
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "security.md"), encoding="utf-8").read()
    example = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    assert '("127.0.0.1", 1234)' in example
    server, port = procs.serve("--auth", "jwt", "--jwt-key", secret_file)
    ns = {"secret": SECRET}
    exec(example.replace('("127.0.0.1", 1234)', f'("127.0.0.1", {port})'), ns)
    with ns["s"] as s:
        assert FrameReader(s).read() == b"framecast: auth ok"
    wait_for_log(server, rb"client \S+ connected as alice")


def channel_pair(reader):
    return reader.read(), reader.read()


def test_permissions_allow_and_deny_per_pattern(procs, secret_file):
    """The token's "framecast" claim: deny wins; a refused SUB/PUB is a notice, the connection
    stays; a subscription overlapping a deny does not receive the denied channels."""
    server, port = procs.serve("--channels", "--auth", "jwt", "--jwt-key", secret_file)
    grants = {"publish": {"allow": ["prices.>"], "deny": ["prices.secret"]},
              "subscribe": {"allow": ["prices.*", "news.>"], "deny": ["news.internal.>"]}}
    limited, admin = connect(port), connect(port)
    limited.sendall(frame(token(sub="limited", framecast=grants)))
    admin.sendall(frame(token(sub="admin")))
    lr, ar = FrameReader(limited), FrameReader(admin)
    # In channels mode the token is answered as an AUTH command is: a $sys pair.
    assert channel_pair(lr) == channel_pair(ar) == (b"$sys.ok", b"AUTH")
    admin.sendall(frame("SUB prices.>") + frame("PING zero"))
    assert channel_pair(ar) == (b"$sys.ok", b"SUB prices.>")
    assert channel_pair(ar) == (b"$sys.pong", b"zero")
    limited.sendall(b"".join(frame(f) for f in [
        "SUB prices.>", "SUB news.internal.hr", "SUB news.>", "PUB news.eu", "dropped",
        "PUB prices.secret", "dropped too", "PUB prices.eu", "101", "PING one"]))
    assert channel_pair(lr) == (b"$sys.error", b"permission-denied SUB prices.>: not allowed by "
                                b"the client's token (subscribe permissions)")
    assert channel_pair(lr)[1].startswith(b"permission-denied SUB news.internal.hr")
    assert channel_pair(lr) == (b"$sys.ok", b"SUB news.>")
    assert channel_pair(lr)[1].startswith(b"permission-denied PUB news.eu")
    assert channel_pair(lr)[1].startswith(b"permission-denied PUB prices.secret")
    assert channel_pair(lr) == (b"$sys.pong", b"one")
    assert channel_pair(ar) == (b"prices.eu", b"101")  # limited's permitted publish got through
    admin.sendall(b"".join(frame(f) for f in [
        "PUB news.internal.hr", "hidden", "PUB news.eu", "shown", "PING two"]))
    assert channel_pair(ar) == (b"$sys.pong", b"two")
    assert channel_pair(lr) == (b"news.eu", b"shown")  # news.internal.hr was filtered out
    limited.sendall(frame("PING three"))
    assert channel_pair(lr) == (b"$sys.pong", b"three")


def test_a_malformed_permissions_claim_is_refused(procs, secret_file):
    server, port = procs.serve("--channels", "--auth", "jwt", "--jwt-key", secret_file)
    with connect(port) as s:
        s.sendall(frame(token(framecast={"publish": {"allow": "prices.>"}})))
        assert read_all_frames(s) == [b"$sys.error", b"auth-refused bad permissions: framecast."
                                      b"publish.allow is not an array of patterns"]


def test_with_auth_a_chat_name_is_the_token_subject(procs, secret_file):
    server, port = procs.serve("--chat", "--auth", "jwt", "--jwt-key", secret_file)
    with connect(port) as s:
        s.sendall(frame(token(sub="mallory")) + frame("alice"))
        assert read_all_frames(s) == [b"framecast: auth ok"]
    wait_for_log(server, rb"username 'alice' is not the token's subject 'mallory'")
    with connect(port) as s:
        s.sendall(frame(token(sub="alice")) + frame("alice"))
        assert FrameReader(s).read() == b"framecast: auth ok"
        wait_for_log(server, rb"alice joined from")


def test_a_token_is_refreshed_without_reconnecting(procs, secret_file):
    """Channels mode: `AUTH <fresh token>` for the same subject replaces the expiry; a client
    that refreshed outlives its first token, one that did not is told and closed."""
    server, port = procs.serve("--channels", "--auth", "jwt", "--jwt-key", secret_file)
    short = token(sub="alice", ttl=2)
    refreshed, other = connect(port), connect(port)
    refreshed.sendall(frame(short))
    other.sendall(frame(short))
    rr = FrameReader(refreshed)
    assert channel_pair(rr) == (b"$sys.ok", b"AUTH")
    refreshed.sendall(frame("AUTH " + token(sub="mallory")) + frame("AUTH not-a-token") +
                      frame("AUTH " + token(sub="alice", ttl=600)))
    assert channel_pair(rr) == (b"$sys.error", b"auth-refused AUTH: the token's subject "
                                b"'mallory' is not this client's 'alice'")
    assert channel_pair(rr)[1].startswith(b"auth-refused AUTH: ")
    assert channel_pair(rr) == (b"$sys.ok", b"AUTH")
    # The other client, with the same first token and no refresh, is told and closed: by then
    # the first token has expired for both.
    # In channels mode the notice is a $sys.error pair, like every other error there.
    assert read_all_frames(other)[-2:] == [b"$sys.error", b"auth-expired token expired"]
    refreshed.sendall(frame("PING still here"))
    assert channel_pair(rr) == (b"$sys.pong", b"still here")
    refreshed.close()


def test_a_refresh_that_narrows_permissions_applies_to_the_next_publish(procs, secret_file):
    """A stream of PUBs to one channel is checked once, at the first; an AUTH refresh with
    narrower permissions must apply from the next PUB on, even to that same channel."""
    server, port = procs.serve("--channels", "--auth", "jwt", "--jwt-key", secret_file)
    pub, sub = connect(port), connect(port)
    pub.sendall(frame(token(sub="pub", framecast={"publish": {"allow": ["prices.>"]}})))
    sub.sendall(frame(token(sub="sub")) + frame("SUB prices.>"))
    pr, sr = FrameReader(pub), FrameReader(sub)
    assert channel_pair(pr) == channel_pair(sr) == (b"$sys.ok", b"AUTH")
    assert channel_pair(sr) == (b"$sys.ok", b"SUB prices.>")
    narrower = token(sub="pub", framecast={"publish": {"allow": ["news.>"]}})
    pub.sendall(b"".join(frame(f) for f in [
        "PUB prices.eu", "1", "PUB prices.eu", "2", "AUTH " + narrower, "PUB prices.eu", "3",
        "PUB news.eu", "4", "PING done"]))
    assert channel_pair(pr) == (b"$sys.ok", b"AUTH")
    assert channel_pair(pr)[1].startswith(b"permission-denied PUB prices.eu")
    assert channel_pair(pr) == (b"$sys.pong", b"done")
    assert [channel_pair(sr) for _ in range(2)] == [(b"prices.eu", b"1"), (b"prices.eu", b"2")]
    sub.sendall(frame("SUB news.>") + frame("PING sync"))
    assert channel_pair(sr) == (b"$sys.ok", b"SUB news.>")
    assert channel_pair(sr) == (b"$sys.pong", b"sync")  # "3" never came


def test_channels_clients_get_the_token_answer_as_sys_pairs(procs, secret_file, tmp_path):
    """A channels client reads pairs from its first frame on: the token's answer and its
    refusal are $sys pairs, and `framecast sub --token` understands both."""
    server, port = procs.serve("--channels", "--auth", "jwt", "--jwt-key", secret_file)
    with connect(port) as s:
        s.sendall(frame(token(ttl=-10)))
        assert read_all_frames(s) == [b"$sys.error", b"auth-refused token expired"]
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text(token())
    bad.write_text(token(ttl=-10))
    c = procs.framecast("sub", f"127.0.0.1:{port}", "news.>", "--token", bad)
    assert c.wait() == 11
    assert b"auth refused: token expired" in c.stderr
    c = procs.framecast("sub", f"127.0.0.1:{port}", "news.>", "--token", good, "--count", "1")
    wait_for_log(c, rb"subscribed to 1 pattern")
    p = procs.framecast("pub", f"127.0.0.1:{port}", "news.eu", "hello", "--token", good)
    assert p.wait() == 0
    assert c.wait() == 0
    assert b"hello" in c.stdout


def test_a_refused_token_over_websocket_is_the_notice_then_close_1008(procs, secret_file):
    """As over TCP, the notice (the first message), then the close 1008 'authentication
    failed' (a refusal, not the server going away)."""
    import asyncio
    websockets = pytest.importorskip("websockets")
    server, _ = procs.serve("--auth", "jwt", "--jwt-key", secret_file, "--ws", "127.0.0.1:0")
    wsport = int(server.wait_for(rb"websocket on ws://127\.0\.0\.1:(\d+)/", stream="out").group(1))

    async def main():
        got = []
        async with websockets.connect(f"ws://127.0.0.1:{wsport}/", open_timeout=10) as ws:
            await ws.send("not a token")
            with pytest.raises(websockets.exceptions.ConnectionClosedError):
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 10))
            return got, ws.close_code, ws.close_reason
    assert asyncio.run(main()) == (["framecast: auth refused: not a JWT"], 1008,
                                   "authentication failed")
