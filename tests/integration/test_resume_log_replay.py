"""Resume from the shared log's past (docs/resume.md, "Several nodes"): with `serve --resume
--backplane`, a client whose position is older than the node's in-memory window, but still in
the Redis stream, is replayed the missing range from Redis, then the node's history, then live:
every message exactly once, in order. A position Redis trimmed too is a gap of exactly what is
gone. A real redis-server per test (tests/integration/redis_server.py)."""
import pytest

from redis_server import REDIS
from resume_wire import read_pieces, resume_request
from framecast_test import connect, frame, metrics, metrics_url, wait_for_log, wait_until

pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server not installed")

TOTAL = 5000


def msg(i):
    """100 bytes or so: the 5,000 make several pieces of the Redis replay (about 64 KiB each)."""
    return f"m{i}:".ljust(100, "x").encode()


def node(procs, redis, *extra):
    return procs.serve("--publish", "--resume", "--backplane", redis.url("deep"),
                       "--metrics", "127.0.0.1:0", "--resume-window", "100", *extra)


def fill(proc, port, n):
    """Publishes m1..mN through the node and waits until it has read them all back."""
    pub = connect(port)
    pub.sendall(b"".join(frame(msg(i)) for i in range(1, n + 1)))
    wait_until(lambda: metrics(metrics_url(proc))["framecast_resume_next_offset"] == n + 1,
               f"{n} messages in the stream")
    return pub


def oldest_in_redis(redis):
    """The offset of the stream's oldest entry (its ID is 0-OFFSET)."""
    reply = redis.command("XRANGE", "deep", "-", "+", "COUNT", "1")
    at = reply.index(b"$") + 1
    length_end = reply.index(b"\r\n", at)
    entry_id = reply[length_end + 2:length_end + 2 + int(reply[at:length_end])]
    return int(entry_id.split(b"-")[1])


def test_position_older_than_the_window_is_replayed_from_redis(procs, redis):
    p, port = node(procs, redis)
    pub = fill(p, port, TOTAL)
    held = metrics(metrics_url(p))["framecast_resume_history_messages"]
    assert TOTAL + 1 - held > 1000  # the window is small: offsets 11..1000 are only in Redis
    _, _, probe = resume_request(port, "probe")
    epoch = probe[2]
    _, r, answer = resume_request(port, f"deep {epoch} 10")
    assert answer[2:] == [epoch, "11", "ok"]
    got = read_pieces(r, TOTAL - 10)
    assert got == [(i, msg(i)) for i in range(11, TOTAL + 1)]
    pub.sendall(b"".join(frame(msg(i)) for i in range(TOTAL + 1, TOTAL + 6)))  # then live
    assert read_pieces(r, 5) == [(i, msg(i)) for i in range(TOTAL + 1, TOTAL + 6)]
    m = metrics(metrics_url(p))
    assert m["framecast_resume_log_replayed_total"] >= TOTAL - 10 - held
    assert m["framecast_resume_gaps_total"] == 0


def test_position_redis_trimmed_is_a_gap_of_what_is_gone(procs, redis):
    p, port = node(procs, redis)
    fill(p, port, TOTAL)
    # Trimmed as retention does it (oldest entries first), to a known point.
    assert redis.command("XTRIM", "deep", "MINID", "0-2000").startswith(b":")
    oldest = oldest_in_redis(redis)
    assert 11 < oldest < TOTAL - 100  # trimmed, yet older than the node's window
    _, _, probe = resume_request(port, "probe")
    epoch = probe[2]
    _, r, answer = resume_request(port, f"old {epoch} 10")
    assert answer[2:] == [epoch, str(oldest), "gap", str(oldest - 11)]
    got = read_pieces(r, TOTAL - oldest + 1)
    assert got == [(i, msg(i)) for i in range(oldest, TOTAL + 1)]
    wait_for_log(p, rb"resumes at %d \(gap %d, from the shared log\)" % (oldest, oldest - 11))


def test_replays_beyond_the_limit_wait_their_turn(procs, redis):
    """--resume-log-replays 1: three clients replaying from Redis at once take turns (one read
    in flight); each still gets everything, exactly once, in order."""
    p, port = node(procs, redis, "--resume-log-replays", "1")
    fill(p, port, TOTAL)
    _, _, probe = resume_request(port, "probe")
    epoch = probe[2]
    clients = [resume_request(port, f"c{k} {epoch} {k}") for k in range(3)]
    for k, (_, r, answer) in enumerate(clients):
        assert answer[3:] == [str(k + 1), "ok"]
    for k, (_, r, _) in enumerate(clients):
        assert read_pieces(r, TOTAL - k) == [(i, msg(i)) for i in range(k + 1, TOTAL + 1)]


def test_redis_unreachable_falls_back_to_a_gap(procs, redis):
    """The stream cannot be read (Redis down): the client is told the gap to what the node
    holds, as without the replay, and served from there."""
    p, port = node(procs, redis)
    fill(p, port, TOTAL)
    _, _, probe = resume_request(port, "probe")
    epoch, oldest = probe[2], TOTAL + 1 - int(
        metrics(metrics_url(p))["framecast_resume_history_messages"])
    redis.stop()
    _, r, answer = resume_request(port, f"down {epoch} 10")
    assert answer[2:] == [epoch, str(oldest), "gap", str(oldest - 11)]
    assert read_pieces(r, TOTAL + 1 - oldest) == [(i, msg(i)) for i in range(oldest, TOTAL + 1)]
    wait_for_log(p, rb"cannot read the stream's past for a resuming client")


def test_seams_move_while_publishing_goes_on(procs, redis):
    """Messages keep coming while the client replays: the window slides under it (it reads from
    Redis again where it fell behind), and it still gets every message once, in order."""
    import threading
    p, port = node(procs, redis)
    pub = fill(p, port, TOTAL)
    _, _, probe = resume_request(port, "probe")
    epoch = probe[2]
    more = 3000

    def publish_more():
        for start in range(TOTAL + 1, TOTAL + more + 1, 100):
            pub.sendall(b"".join(frame(msg(i)) for i in range(start, start + 100)))
    t = threading.Thread(target=publish_more)
    _, r, answer = resume_request(port, f"moving {epoch} 1")
    t.start()
    assert answer[3:] == ["2", "ok"]
    got = read_pieces(r, TOTAL + more - 1)
    t.join()
    assert got == [(i, msg(i)) for i in range(2, TOTAL + more + 1)]
