// Fan-out subscribers for framed-TCP publishers (the ceiling's pub, `framecast serve`): K
// connections in one process, one epoll loop, one framecast::decoder per connection and one
// shared 256 KiB read buffer. Counts deliveries and, per message, when the last of the K got it.
//
//   bench_fanout_sub run --connect HOST:PORT --k K --size N --count M --system NAME
//       [--welcome 1] [--idle-ms 2000] [--deadline-s 60] [--out FILE]
//
//   bench_fanout_sub source --size N --count M [--rate R]
//       the publisher side for `framecast serve --source stdin`: stamped messages, one per line,
//       on stdout (R per second when R > 0, else in 256 KiB writes as fast as the pipe takes them)
//
// Prints "ready" on stdout when every connection is up (with --welcome 1: when every connection
// got its first message, which means the server has registered it), then the result line once
// every connection has closed or has the last message, or nothing arrived for --idle-ms.
#include <memory>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/epoll.h>

#include <framecast/codec.hpp>

#include "common.hpp"
#include "fanout.hpp"

namespace {

using namespace bench;

struct subscriber {
    int fd = -1;
    framecast::decoder dec;
    bool ready = false;
    bool done = false;
};

int run(const options& o) {
    raise_nofile();
    const std::string target = o.str("connect");
    const std::uint64_t k = o.u64("k", 1), count = o.u64("count", 1000), size = o.u64("size", 100);
    const bool welcome = o.u64("welcome", 0) != 0;
    const std::int64_t idle_ns = static_cast<std::int64_t>(o.u64("idle-ms", 2000)) * 1'000'000;
    const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(o.u64("deadline-s", 60)) * 1'000'000'000;
    const std::string system = o.str("system", "framed");

    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    std::vector<std::unique_ptr<subscriber>> subs;
    subs.reserve(k);
    for (std::uint64_t i = 0; i < k; ++i) {
        auto s = std::make_unique<subscriber>();
        s->fd = connect_tcp(target);
        s->ready = !welcome;
        ::fcntl(s->fd, F_SETFL, O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = s.get();
        if (::epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) != 0) die("epoll_ctl");
        subs.push_back(std::move(s));
    }
    std::uint64_t ready = welcome ? 0 : k, done = 0;
    if (ready == k) std::printf("ready\n"), std::fflush(stdout);

    fanout_tracker tracker(k, count);
    std::vector<char> buf(256 * 1024);
    std::vector<epoll_event> events(1024);
    std::int64_t last_activity = now_ns();
    while (done < k) {
        int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
        std::int64_t now = now_ns();
        if (n < 0 && errno != EINTR) die("epoll_wait");
        if (n <= 0) {
            bool started = ready == k && tracker.deliveries() > 0;
            if ((started && now - last_activity > idle_ns) || now > deadline) break;
            continue;
        }
        last_activity = now;
        for (int i = 0; i < n; ++i) {
            auto* s = static_cast<subscriber*>(events[static_cast<std::size_t>(i)].data.ptr);
            for (;;) {  // drain this socket
                ssize_t r = ::recv(s->fd, buf.data(), buf.size(), 0);
                if (r < 0 && errno == EINTR) continue;
                if (r < 0 && errno == EAGAIN) break;
                if (r <= 0) {
                    ::close(s->fd);  // also leaves the epoll set
                    if (!s->done) s->done = true, ++done;
                    if (!s->ready) s->ready = true, ++ready;
                    break;
                }
                const std::int64_t at = now_ns();
                std::span<const char> in(buf.data(), static_cast<std::size_t>(r));
                for (;;) {
                    auto ev = s->dec.next(in);
                    if (ev == framecast::decode_event::need_more) break;
                    if (ev != framecast::decode_event::frame) die(s->dec.error_message().c_str());
                    if (!s->ready) {
                        s->ready = true;
                        if (++ready == k) std::printf("ready\n"), std::fflush(stdout);
                    }
                    std::uint64_t seq = 0;
                    if (tracker.on_message(s->dec.payload(), at, seq) && seq + 1 == count && !s->done) {
                        s->done = true;
                        ++done;
                    }
                }
                if (static_cast<std::size_t>(r) < buf.size()) break;
            }
        }
    }
    tracker.report(system.c_str(), size, o.str("out"));
    return 0;
}

int source(const options& o) {
    const std::uint64_t count = o.u64("count", 1000);
    const std::size_t size = o.u64("size", 100);  // under 31 bytes: no stamp, plain 'x's
    const double rate = o.f64("rate", 0);
    const std::size_t per = rate > 0 ? 1 : std::max<std::size_t>(1, 256 * 1024 / (size + 1));
    std::string batch(per * (size + 1), 'x');
    for (std::size_t i = 0; i < per; ++i) batch[i * (size + 1) + size] = '\n';
    const std::int64_t start = now_ns();
    for (std::uint64_t seq = 0; seq < count;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(per, count - seq));
        if (rate > 0) wait_until_ns(start + static_cast<std::int64_t>(static_cast<double>(seq) * 1e9 / rate));
        std::int64_t t = now_ns();
        for (std::size_t i = 0; i < n; ++i) stamp_payload(&batch[i * (size + 1)], size, seq + i, t);
        const char* p = batch.data();
        std::size_t left = n * (size + 1);
        while (left > 0) {
            ssize_t w = ::write(1, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) die("write");
            p += w;
            left -= static_cast<std::size_t>(w);
        }
        seq += n;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    options o(argc, argv);
    if (o.mode() == "run") return run(o);
    if (o.mode() == "source") return source(o);
    std::fprintf(stderr, "bench_fanout_sub: unknown mode %s\n", o.mode().c_str());
    return 2;
}
