"""The README's and docs/' examples, as written. Every `framecast ...` command in a ```sh block
goes through the real command-line parser (FRAMECAST_CHECK_ARGS=1: parse, then stop), so a
renamed option or a wrong value in the docs fails here; then each document's examples run for
real, in order, against real servers (test_documented_examples_run, below), and the relay
pipeline runs on its own (test_relay_example_as_documented)."""
import glob
import os
import re
import shlex
import signal
import subprocess

import pytest

from framecast_test import BIN, DEADLINE

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def documented_commands():
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                # Each stage of a pipeline that runs framecast.
                stage, skip = [], False
                for w in words + ["|"]:
                    if skip:  # the file of a redirection
                        skip = False
                    elif w in (">", ">>", "<", "2>"):
                        skip = True
                    elif w in ("|", "&&", ";"):
                        if stage and os.path.basename(stage[0]) == "framecast":
                            yield os.path.basename(path), line.strip(), stage[1:]
                        stage = []
                    else:
                        stage.append(w)


COMMANDS = list(documented_commands())


def test_the_docs_have_examples():
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("doc, line, args", COMMANDS, ids=[f"{d}:{l[:50]}" for d, l, _ in COMMANDS])
def test_documented_command_parses(doc, line, args, tmp_path):
    env = dict(os.environ, FRAMECAST_CHECK_ARGS="1")
    # Files the examples name (--config, --file, --tls-cert, --jwt-key, ...) may not exist here:
    # empty stand-ins with the same names, in a scratch directory the command runs in.
    FILE_LIKE = re.compile(r"^[\w./-]+\.(pem|key|crt|secret|toml|bin|jpg|pdf|txt|frames)$")
    for i, a in enumerate(args):
        if i > 0 and (args[i - 1] in ("--config", "--file", "-f") or FILE_LIKE.match(a)):
            stand_in = tmp_path / a.lstrip("/")
            stand_in.parent.mkdir(parents=True, exist_ok=True)
            stand_in.write_text("")
            args = args[:i] + [str(stand_in)] + args[i + 1:]
    r = subprocess.run([BIN, *args], env=env, capture_output=True, timeout=DEADLINE, cwd=tmp_path)
    assert r.returncode == 0, f"{doc}: {line}\n{r.stderr.decode()}"


def test_relay_example_as_documented(procs):
    """docs/serve.md: `framecast connect upstream:1243 -o framed | framecast serve --source
    stdin-framed --listen :9000`, with a stdin server upstream."""
    upstream, up = procs.serve("--source", "stdin", "--wait-for", "1", stdin=subprocess.PIPE)
    relay_in = subprocess.Popen([BIN, "connect", f"127.0.0.1:{up}", "-o", "framed"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    relay = procs.framecast("serve", "--source", "stdin-framed", "--wait-for", "1",
                            "--listen", "127.0.0.1:0", stdin=relay_in.stdout)
    relay_in.stdout.close()
    port = int(relay.wait_for(rb"listening on 127\.0\.0\.1:(\d+)", stream="out").group(1))
    sub = procs.framecast("connect", f"127.0.0.1:{port}", "--count", "3")
    relay.wait_for(rb"starting the source")
    upstream.p.stdin.write("one\ntwo\nthrée\n".encode())
    upstream.p.stdin.close()
    assert sub.wait() == 0, sub.stderr
    assert sub.stdout == "one\ntwo\nthrée\n".encode()
    assert relay.wait() == 0 and relay_in.wait(timeout=DEADLINE) == 0


# --- every example, run as written ---------------------------------------------------------------
# Each document's ```sh lines run in order through bash, as a reader would type them, in one
# scratch directory. Only addresses change: a server listens on 127.0.0.1:0 and a client goes to
# the server the document started on the port it names (a documented `serve` line), or, when the
# document starts none, to one of the matching kind (a time stream for `connect`, `serve --print`
# for `send`, a chat room for `chat`, channels for `sub`/`pub`). Files the examples name are made
# by the document's own setup lines (openssl, head) or here. Servers must start and stop with exit
# 0; one-shot clients must exit 0; streaming clients (`connect` without --count, `sub`) must
# connect and still be running when the document ends; a comment `# prints "X"` is checked.
# Not run: `framecast bench` (minutes; parsed above) and the relay pipeline (run above).

ADDRESS = re.compile(r"(wss?://)?(?:127\.0\.0\.1|0\.0\.0\.0|localhost|host|upstream|example\.org|"
                     r"chat\.example\.org|stream\.example\.com|\[::1\]|10\.0\.0\.5)?"
                     r"(?::(\d+)|(?<=[a-z])(?=/))")  # a port, or none after a URL's host
SETUP = ("openssl", "head")
# A peer written from the tutorial, for the examples aimed at one: prints what each client sent.
TUTORIAL_SINK = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(f"listening on 127.0.0.1:{s.getsockname()[1]}", file=sys.stderr, flush=True)
while True:
    c, _ = s.accept(); data = b""
    while (d := c.recv(65536)):
        data += d
    print(repr(data), flush=True); c.close()
"""
# What that peer must receive from an example (its comment says it in words).
PEER_SEES = {'--length-unit code-points "è"': "1         è".encode()}


def doc_lines(path):
    text = open(path, encoding="utf-8").read()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                yield line.strip()


def stages(line):
    """The framecast stages of a shell line: [(verb, words)]."""
    out, stage = [], []
    for w in shlex.split(line, comments=True) + ["|"]:
        if w in ("|", "&&", ";"):
            if stage and os.path.basename(stage[0]) == "framecast":
                out.append((stage[1] if len(stage) > 1 else "", stage))
            stage = []
        else:
            stage.append(w)
    return out


def option(words, name):
    return words[words.index(name) + 1] if name in words else None


def logical_port(address):
    return int(address.rsplit(":", 1)[1])


def framecast_pids(leader):
    """The framecast processes in the session a bash line started (its pipeline)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if comm == "framecast" and int(rest[3]) == leader:
                pids.append(int(d))
    return pids


def stop(proc):
    """SIGTERM to the framecast processes of a line (not to bash or seq); its exit code."""
    for pid in framecast_pids(proc.p.pid):
        os.kill(pid, signal.SIGTERM)
    return proc.wait()


class DocRun:
    def __init__(self, procs, workdir, redis_url):
        self.procs, self.dir, self.redis_url = procs, workdir, redis_url
        self.servers = {}   # logical port -> (proc, actual port)
        self.defaults = {}  # (kind, logical port, length unit) -> the same
        self.clients, self.all_servers, self.peers, self.lines_run = [], [], [], []
        env = dict(os.environ, PATH=os.path.dirname(os.path.abspath(BIN)) + ":" + os.environ["PATH"])
        if (workdir / "ca.pem").exists():
            env["SSL_CERT_FILE"] = str(workdir / "ca.pem")  # "the system's CAs", here
        self.env = env

    def bash(self, text):
        return self.procs.start(["bash", "-c", text], env=self.env, cwd=self.dir,
                                start_new_session=True)

    def serve(self, line, words, register=True):
        """Starts a documented server line on port 0; registers its logical ports."""
        text = line
        roles = []
        for opt, role in (("--listen", rb"listening on 127\.0\.0\.1:"),
                          ("--ws", rb"websocket on wss?://127\.0\.0\.1:"),
                          ("--metrics", rb"metrics on http://127\.0\.0\.1:")):
            value = option(words, opt)
            if value is not None:
                text = text.replace(f"{opt} {value}", f"{opt} 127.0.0.1:0", 1)
                roles.append((logical_port(value), role))
            elif opt == "--listen":
                text = text.replace("framecast serve", "framecast serve --listen 127.0.0.1:0", 1)
                roles.append((1243, role))
        backplane = option(words, "--backplane")
        if backplane:
            assert self.redis_url, "redis-server is needed for the backplane examples"
            text = text.replace(backplane, self.redis_url + "/" + backplane.rsplit("/", 1)[1])
        p = self.bash(text)
        ports = {}
        for port, role in roles:
            ports[port] = (p, int(p.wait_for(role + rb"(\d+)").group(1)))  # its log
        if register:
            self.servers.update(ports)
        self.all_servers.append((line, p))
        return p if register else ports

    def default_server(self, verb, words, port, ws):
        unit = option(words, "--length-unit")
        key = (verb, port, unit, ws)
        if unit == "code-points" and key not in self.defaults:
            # Headers that count characters are for the tutorial's own Python peers.
            p = self.procs.python(TUTORIAL_SINK)
            self.peers.append(p)
            self.defaults[key] = (p, int(p.wait_for(rb"listening on 127.0.0.1:(\d+)").group(1)))
        if key not in self.defaults:
            # --publish-acks: `send/pub --reconnect` examples need it; other clients never
            # notice it.
            mode = {"connect": ["--interval", "0.01"], "send": ["--print", "--publish-acks"],
                    "chat": ["--chat"], "sub": ["--channels"],
                    "pub": ["--channels", "--publish-acks"], "stats": []}[verb]
            args = mode + (["--length-unit", unit] if unit else [])
            opt = "--metrics" if verb == "stats" else "--ws" if ws else "--listen"
            if ws == "wss://":
                args += ["--ws-tls", "--tls-cert", "server.pem", "--tls-key", "server.key"]
            line = f"framecast serve {' '.join(args)} {opt} :{port}"
            self.defaults[key] = self.serve(line, shlex.split(line), register=False)[port]
        return self.defaults[key]

    def client(self, line, verb, words):
        text = line
        for m in ADDRESS.finditer(line):
            if not m.group(0):
                continue
            port = int(m.group(2) or (443 if m.group(1) == "wss://" else 80))
            target = self.servers.get(port) or self.default_server(verb, words, port, m.group(1))
            text = text.replace(m.group(0), f"{m.group(1) or ''}127.0.0.1:{target[1]}", 1)
        p = self.bash(text)
        self.lines_run.append(line)
        if verb in ("send", "pub", "chat") or "--count" in words:
            rc = p.wait(timeout=60)
            assert rc == 0, f"{line}\n-> exit {rc}\n{p.stderr.decode()[-2000:]}"
        else:
            # Streaming: it connects (its log says so; `stats` draws its screen) and keeps going.
            if verb == "stats":
                p.wait_for(rb"\S", stream="out")
            else:
                p.wait_for(rb"connected to|subscribed to")
            self.clients.append((line, p))
        return p

    def line(self, line):
        found = stages(line)
        if not found:
            return None
        if len(found) > 1 or found[0][1][0] != "framecast":
            return None  # the relay (run above) and `build/.../framecast bench` (minutes)
        verb, words = found[0]
        return self.serve(line, words) if verb == "serve" else self.client(line, verb, words)

    def finish(self, printed):
        for text, proc in printed:
            proc.wait_for(re.escape(text.encode()), stream="out")
        for line, expected in PEER_SEES.items():
            if any(line in run for run in self.lines_run):
                assert self.peers, f"{line}: no tutorial peer was started"
                self.peers[0].wait_for(re.escape(repr(expected).encode()), stream="out")
        for p in self.peers:
            p.kill()
        for line, p in self.clients:
            assert p.p.poll() is None, f"{line}: exited {p.p.returncode}\n{p.stderr.decode()[-2000:]}"
            stop(p)
        for line, p in self.all_servers:
            rc = stop(p)
            assert rc == 0, f"{line}\n-> exit {rc}\n{p.stderr.decode()[-2000:]}"


def make_files(workdir):
    """Files the examples name that no documented line makes (a document's own setup lines,
    run after this, may make them again: security.md makes its CA and server certificate)."""
    for name in ("photo.jpg", "report.pdf", "notes.txt"):
        (workdir / name).write_bytes(bytes(range(256)) + name.encode())
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(workdir / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(workdir / "server.pem"))
    run = lambda cmd: subprocess.run(["bash", "-c", cmd], cwd=workdir, check=True,
                                     capture_output=True, timeout=DEADLINE)
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
        "-subj /CN=client -keyout client.key -out client.pem")
    run("openssl ecparam -name prime256v1 -genkey -noout -out issuer.key && "
        "openssl ec -in issuer.key -pubout -out issuer.pub.pem")


@pytest.mark.parametrize("doc", [os.path.basename(d) for d in DOCS])
def test_documented_examples_run(doc, procs, tmp_path):
    lines = list(doc_lines(DOCS[[os.path.basename(d) for d in DOCS].index(doc)]))
    if not any(stages(line) for line in lines):
        pytest.skip("no framecast example")
    make_files(tmp_path)
    # A TOML block whose first line names its file (`# permissions.toml`) is that file.
    for block in re.findall(r"```toml\n(.*?)```", open(DOCS[[os.path.basename(d) for d in DOCS].index(doc)],
                                                       encoding="utf-8").read(), re.S):
        if m := re.match(r"# ([\w.-]+\.toml)\n", block):
            (tmp_path / m.group(1)).write_text(block)
    for line in lines:  # the document's own setup: certificates, secrets
        if not stages(line) and line.split()[0] in SETUP:
            subprocess.run(["bash", "-c", line], cwd=tmp_path, check=True, capture_output=True,
                           timeout=DEADLINE)
    redis = None
    if any("--backplane" in line for line in lines):
        from redis_server import REDIS, Redis
        if REDIS is None:
            pytest.skip("redis-server not installed")
        redis = Redis(tmp_path)
        redis.start()
    try:
        run = DocRun(procs, tmp_path, redis and f"redis://127.0.0.1:{redis.port}")
        printed = []
        for line in lines:
            p = run.line(line)
            m = re.search(r'# prints "([^"]+)"', line)
            if p and m:
                printed.append((m.group(1), p))
        run.finish(printed)
    finally:
        if redis:
            redis.kill()
