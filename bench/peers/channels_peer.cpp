// Load generators for channels, speaking either `framecast serve --channels` (--proto fc:
// the tutorial's frames, docs/channels.md) or NATS (--proto nats: the text protocol of
// nats-server), so the two servers are measured by the same code. All connections of a mode
// live in one process and one epoll loop; one 256 KiB read buffer is shared.
//
//   bench_channels subs  --proto P --connect HOST:PORT --k K --subject S --size N --count M
//                        [--system NAME] [--idle-ms 2000] [--deadline-s 60] [--out FILE]
//       K subscribers of S; "ready" once every subscription is confirmed (a PING answered),
//       then the fan-out result line (the same fields as bench_fanout_sub).
//   bench_channels pub   --proto P --connect HOST:PORT --subject S --size N --count M
//       publishes M stamped messages as fast as the server takes them, then PING; prints the
//       published rate once the server answered.
//   bench_channels noise --proto P --connect HOST:PORT --n N --conns C
//       N wildcard subscriptions that match no benchmark subject ('*.nI' and 'bench.nI.>'),
//       over C connections; "ready" when confirmed; holds them until stdin closes.
//   bench_channels many  --proto P --connect HOST:PORT --channels CH --subs S --conns C
//       connects C connections, prints "connected", waits for a line on stdin, then makes S
//       subscriptions to CH distinct channels ('m.I'), spread so no connection repeats one;
//       "ready" when confirmed; holds them until stdin closes (the driver reads the RSS).
//   bench_channels churn --proto P --connect HOST:PORT --n N
//       N times: subscribe + PING, then unsubscribe + PING, each timed to its answer; prints
//       p50/p99 of both.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/epoll.h>

#include <framecast/codec.hpp>

#include "common.hpp"
#include "fanout.hpp"

namespace {

using namespace bench;

bool nats_proto = false;

// ---------------------------------------------------------------------------------------------
// Commands, in either protocol

std::string fc_frame(std::string_view payload) { return framecast::encode_frame(payload); }

std::string hello() {
    return nats_proto ? "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n" : "";
}
std::string sub_cmd(std::string_view subject, std::uint64_t sid) {
    if (nats_proto) return "SUB " + std::string(subject) + " " + std::to_string(sid) + "\r\n";
    return fc_frame("SUB " + std::string(subject));
}
std::string unsub_cmd(std::string_view subject, std::uint64_t sid) {
    if (nats_proto) return "UNSUB " + std::to_string(sid) + "\r\n";
    return fc_frame("UNSUB " + std::string(subject));
}
std::string ping_cmd() { return nats_proto ? "PING\r\n" : fc_frame("PING"); }
void append_pub(std::string& out, std::string_view subject, std::string_view payload) {
    if (nats_proto) {
        out += "PUB ";
        out += subject;
        out += ' ';
        out += std::to_string(payload.size());
        out += "\r\n";
        out += payload;
        out += "\r\n";
    } else {
        framecast::append_frame(out, "PUB " + std::string(subject));
        framecast::append_frame(out, payload);
    }
}

// ---------------------------------------------------------------------------------------------
// What arrives: deliveries and PING answers, in either protocol

struct conn {
    int fd = -1;
    framecast::decoder dec;
    bool have_channel = false;
    bool is_pong = false;
    std::string buf;  // NATS: bytes not yet parsed
    std::uint64_t pongs = 0;
    bool done = false;
};

template <class OnMsg>
void parse_fc(conn& c, std::span<const char> in, OnMsg&& on_msg) {
    for (;;) {
        auto ev = c.dec.next(in);
        if (ev == framecast::decode_event::need_more) return;
        if (ev != framecast::decode_event::frame) die(c.dec.error_message().c_str());
        auto p = c.dec.payload();
        if (!c.have_channel) {
            c.have_channel = true;
            c.is_pong = p == "$sys.pong";
            if (p == "$sys.error") std::fprintf(stderr, "server error notice\n");
            continue;
        }
        c.have_channel = false;
        if (c.is_pong) {
            ++c.pongs;
        } else {
            on_msg(p);
        }
    }
}

template <class OnMsg>
void parse_nats(conn& c, std::span<const char> in, OnMsg&& on_msg) {
    c.buf.append(in.data(), in.size());
    std::size_t pos = 0;
    for (;;) {
        auto eol = c.buf.find("\r\n", pos);
        if (eol == std::string::npos) break;
        std::string_view line(c.buf.data() + pos, eol - pos);
        if (line.starts_with("MSG ")) {
            auto sp = line.rfind(' ');
            std::size_t n = 0;
            std::from_chars(line.data() + sp + 1, line.data() + line.size(), n);
            if (c.buf.size() < eol + 2 + n + 2) break;  // payload not all here yet
            on_msg(std::string_view(c.buf.data() + eol + 2, n));
            pos = eol + 2 + n + 2;
            continue;
        }
        if (line == "PONG") ++c.pongs;
        if (line == "PING") write_all(c.fd, "PONG\r\n", 6);
        if (line.starts_with("-ERR")) std::fprintf(stderr, "%.*s\n", int(line.size()), line.data());
        pos = eol + 2;
    }
    c.buf.erase(0, pos);
}

template <class OnMsg>
void parse(conn& c, std::span<const char> in, OnMsg&& on_msg) {
    if (nats_proto) {
        parse_nats(c, in, on_msg);
    } else {
        parse_fc(c, in, on_msg);
    }
}

// Blocks until `c` has `pongs` answers (NATS: discarding anything else).
void wait_pongs(conn& c, std::uint64_t pongs, std::vector<char>& buf) {
    while (c.pongs < pongs) {
        ssize_t r = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("connection closed while waiting for a PING answer");
        parse(c, {buf.data(), static_cast<std::size_t>(r)}, [](std::string_view) {});
    }
}

std::vector<std::unique_ptr<conn>> connect_all(const std::string& target, std::uint64_t n) {
    std::vector<std::unique_ptr<conn>> out;
    const std::string h = hello();
    for (std::uint64_t i = 0; i < n; ++i) {
        auto c = std::make_unique<conn>();
        c->fd = connect_tcp(target);
        if (!h.empty()) write_all(c->fd, h.data(), h.size());
        out.push_back(std::move(c));
    }
    return out;
}

void hold_until_stdin_closes() {
    char b[256];
    while (::read(0, b, sizeof b) > 0) {
    }
}

// ---------------------------------------------------------------------------------------------

int subs(const options& o) {
    raise_nofile();
    const std::uint64_t k = o.u64("k", 1), count = o.u64("count", 1000), size = o.u64("size", 100);
    const std::string subject = o.str("subject", "bench.x");
    const std::int64_t idle_ns = static_cast<std::int64_t>(o.u64("idle-ms", 2000)) * 1'000'000;
    const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(o.u64("deadline-s", 60)) * 1'000'000'000;
    std::vector<char> buf(256 * 1024);
    auto conns = connect_all(o.str("connect"), k);
    const std::string cmds = sub_cmd(subject, 1) + ping_cmd();
    for (auto& c : conns) write_all(c->fd, cmds.data(), cmds.size());
    for (auto& c : conns) wait_pongs(*c, 1, buf);
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    for (auto& c : conns) {
        ::fcntl(c->fd, F_SETFL, O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = c.get();
        if (::epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
    }
    std::printf("ready\n");
    std::fflush(stdout);

    fanout_tracker tracker(k, count);
    std::vector<epoll_event> events(1024);
    std::int64_t last_activity = now_ns();
    std::uint64_t done = 0;
    while (done < k) {
        int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
        const std::int64_t now = now_ns();
        if (n < 0 && errno != EINTR) die("epoll_wait");
        if (n <= 0) {
            if ((tracker.deliveries() > 0 && now - last_activity > idle_ns) || now > deadline) break;
            continue;
        }
        last_activity = now;
        for (int i = 0; i < n; ++i) {
            auto* c = static_cast<conn*>(events[static_cast<std::size_t>(i)].data.ptr);
            for (;;) {
                ssize_t r = ::recv(c->fd, buf.data(), buf.size(), 0);
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) {
                    ::close(c->fd);
                    if (!c->done) c->done = true, ++done;
                    break;
                }
                const std::int64_t at = now_ns();
                parse(*c, {buf.data(), static_cast<std::size_t>(r)}, [&](std::string_view p) {
                    std::uint64_t seq = 0;
                    if (tracker.on_message(p, at, seq) && seq + 1 == count && !c->done) {
                        c->done = true;
                        ++done;
                    }
                });
                if (static_cast<std::size_t>(r) < buf.size()) break;
            }
        }
    }
    tracker.report(o.str("system", nats_proto ? "nats-server" : "framecast-channels").c_str(),
                   size, o.str("out"));
    return 0;
}

// The publisher must not be what limits the servers: a batch of messages is built once, and
// per message only its stamp changes — the sequence number as a decimal counter incremented in
// place, the time formatted once per batch (stamp_payload's layout, without snprintf).
struct stamper {
    char seq[10];
    char time[19];
    stamper() { std::memset(seq, '0', sizeof seq); }
    void set_time(std::int64_t t) {
        for (int i = 18; i >= 0; --i, t /= 10) time[i] = static_cast<char>('0' + t % 10);
    }
    void next() {
        for (int i = 9; i >= 0 && ++seq[i] > '9'; --i) seq[i] = '0';
    }
    void write(char* p) const {
        std::memcpy(p, seq, sizeof seq);
        p[10] = ' ';
        std::memcpy(p + 11, time, sizeof time);
        p[30] = ' ';
    }
};

int pub(const options& o) {
    const std::uint64_t count = o.u64("count", 1000), size = o.u64("size", 100);
    const std::string subject = o.str("subject", "bench.x");
    auto conns = connect_all(o.str("connect"), 1);
    conn& c = *conns[0];
    std::vector<char> buf(64 * 1024);
    // One message on the wire; a batch of ~256 KiB of them, built once.
    std::string one;
    append_pub(one, subject, std::string(size, 'x'));
    const std::size_t stamp_at = nats_proto ? one.size() - 2 - size : one.size() - size;
    const std::uint64_t per_batch = std::max<std::size_t>(1, 256 * 1024 / one.size());
    std::string batch;
    for (std::uint64_t i = 0; i < per_batch; ++i) batch.append(one);
    stamper stamp;
    const std::int64_t start = now_ns();
    for (std::uint64_t seq = 0; seq < count;) {
        const std::uint64_t n = std::min(per_batch, count - seq);
        stamp.set_time(now_ns());  // one clock read per batch
        if (size >= stamp_size) {
            for (std::uint64_t i = 0; i < n; ++i, stamp.next()) {
                stamp.write(batch.data() + i * one.size() + stamp_at);
            }
        }
        seq += n;
        write_all(c.fd, batch.data(), n * one.size());
    }
    const std::string ping = ping_cmd();
    write_all(c.fd, ping.data(), ping.size());
    wait_pongs(c, 1, buf);
    const double s = static_cast<double>(now_ns() - start) / 1e9;
    result r;
    r.add("system", nats_proto ? "nats-server" : "framecast-channels").add("scenario", "publish")
        .add("size", size).add("count", count).add("seconds", s)
        .add("msgs_per_s", static_cast<double>(count) / s);
    r.print();
    return 0;
}

// Sends `cmds` to every connection (one subscription list each), then one PING and waits.
void subscribe_all(std::vector<std::unique_ptr<conn>>& conns, std::vector<std::string>& cmds) {
    std::vector<char> buf(256 * 1024);
    const std::string ping = ping_cmd();
    for (std::size_t i = 0; i < conns.size(); ++i) {
        cmds[i] += ping;
        const auto want = conns[i]->pongs + 1;
        write_all(conns[i]->fd, cmds[i].data(), cmds[i].size());
        std::string().swap(cmds[i]);
        // Read what is already answered meanwhile, so neither side's buffers fill up.
        wait_pongs(*conns[i], want, buf);
    }
}

int noise(const options& o) {
    raise_nofile();
    const std::uint64_t n = o.u64("n", 10000), nconns = std::max<std::uint64_t>(1, o.u64("conns", 10));
    auto conns = connect_all(o.str("connect"), nconns);
    std::vector<std::string> cmds(nconns);
    for (std::uint64_t i = 0; i < n; ++i) {
        const std::string p = i % 2 ? "*.n" + std::to_string(i) : "bench.n" + std::to_string(i) + ".>";
        cmds[i % nconns] += sub_cmd(p, i + 1);
    }
    subscribe_all(conns, cmds);
    std::printf("ready\n");
    std::fflush(stdout);
    hold_until_stdin_closes();
    return 0;
}

int many(const options& o) {
    raise_nofile();
    const std::uint64_t channels = o.u64("channels", 100000), total = o.u64("subs", 1000000);
    const std::uint64_t nconns = std::max<std::uint64_t>(1, o.u64("conns", 101));
    auto conns = connect_all(o.str("connect"), nconns);
    {
        std::vector<std::string> pings(nconns);
        subscribe_all(conns, pings);  // a round trip each: connected and registered
    }
    std::printf("connected\n");
    std::fflush(stdout);
    char line[64];
    if (!std::fgets(line, sizeof line, stdin)) return 1;
    // Subscription j goes to connection j % C and channel j % CH: with C and CH coprime, no
    // connection holds a channel twice while S <= C * CH.
    std::vector<std::string> cmds(nconns);
    for (std::uint64_t j = 0; j < total; ++j) {
        cmds[j % nconns] += sub_cmd("m." + std::to_string(j % channels), j + 1);
    }
    subscribe_all(conns, cmds);
    std::printf("ready\n");
    std::fflush(stdout);
    hold_until_stdin_closes();
    return 0;
}

int churn(const options& o) {
    const std::uint64_t n = o.u64("n", 10000);
    auto conns = connect_all(o.str("connect"), 1);
    conn& c = *conns[0];
    std::vector<char> buf(64 * 1024);
    std::vector<double> sub_us, unsub_us;
    std::uint64_t pongs = 0;
    const std::string ping = ping_cmd();
    for (std::uint64_t i = 0; i < n; ++i) {
        const std::string subject = "churn." + std::to_string(i % 1000) + ".x";
        for (int phase = 0; phase < 2; ++phase) {
            std::string cmd = (phase == 0 ? sub_cmd(subject, 1) : unsub_cmd(subject, 1)) + ping;
            const std::int64_t t0 = now_ns();
            write_all(c.fd, cmd.data(), cmd.size());
            wait_pongs(c, ++pongs, buf);
            (phase == 0 ? sub_us : unsub_us).push_back(static_cast<double>(now_ns() - t0) / 1e3);
        }
    }
    std::sort(sub_us.begin(), sub_us.end());
    std::sort(unsub_us.begin(), unsub_us.end());
    result r;
    r.add("system", nats_proto ? "nats-server" : "framecast-channels").add("scenario", "churn")
        .add("count", n).add("sub_p50_us", percentile(sub_us, 50))
        .add("sub_p99_us", percentile(sub_us, 99)).add("unsub_p50_us", percentile(unsub_us, 50))
        .add("unsub_p99_us", percentile(unsub_us, 99));
    r.print();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    options o(argc, argv);
    nats_proto = o.str("proto", "fc") == "nats";
    if (o.mode() == "subs") return subs(o);
    if (o.mode() == "pub") return pub(o);
    if (o.mode() == "noise") return noise(o);
    if (o.mode() == "many") return many(o);
    if (o.mode() == "churn") return churn(o);
    std::fprintf(stderr, "bench_channels: unknown mode %s\n", o.mode().c_str());
    return 2;
}
