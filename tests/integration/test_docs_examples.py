"""The README's and docs/' examples, as written: every `framecast ...` command in a ```sh block
goes through the real command-line parser (FRAMECAST_CHECK_ARGS=1: parse, then stop), so a
renamed option or a wrong value in the docs fails here; the pipelines the docs promise are run
for real below (and in test_cli_truth.py: --wait-for, send's inputs, serve --print)."""
import glob
import os
import re
import shlex
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
