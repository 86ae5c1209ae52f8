// What the benchmark peers share: a tiny option parser, loopback sockets, the clock, the
// payload format that carries a sequence number and a send time, and the one-line JSON result.
//
// Every peer prints "listening on 127.0.0.1:PORT" on stdout when it is the listening side (the
// same line `framecast serve` prints, so the driver treats all servers alike), and exactly one
// JSON object on a line of its own when it has a result. Diagnostics go to stderr.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

namespace bench {

// --- options ----------------------------------------------------------------------------------

// "prog MODE --key value ...": the first word is the mode, the rest are --key value pairs.
class options {
public:
    options(int argc, char** argv) {
        if (argc < 2) usage(argv[0]);
        mode_ = argv[1];
        for (int i = 2; i < argc; ++i) {
            std::string key = argv[i];
            if (key.rfind("--", 0) != 0 || i + 1 >= argc) usage(argv[0]);
            values_[key.substr(2)] = argv[++i];
        }
    }
    const std::string& mode() const { return mode_; }
    std::string str(const std::string& key, const std::string& fallback = "") const {
        auto it = values_.find(key);
        return it == values_.end() ? fallback : it->second;
    }
    std::uint64_t u64(const std::string& key, std::uint64_t fallback) const {
        auto it = values_.find(key);
        return it == values_.end() ? fallback : std::strtoull(it->second.c_str(), nullptr, 10);
    }
    double f64(const std::string& key, double fallback) const {
        auto it = values_.find(key);
        return it == values_.end() ? fallback : std::strtod(it->second.c_str(), nullptr);
    }

private:
    [[noreturn]] static void usage(const char* prog) {
        std::fprintf(stderr, "usage: %s MODE [--key value]... (see the comment at the top of the source)\n",
                     prog);
        std::exit(2);
    }
    std::string mode_;
    std::map<std::string, std::string> values_;
};

[[noreturn]] inline void die(const char* what) {
    std::fprintf(stderr, "%s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

// --- time -------------------------------------------------------------------------------------

// CLOCK_MONOTONIC in nanoseconds: comparable across processes on one machine, which is what
// lets a subscriber process compute publish-to-delivery latency from a time in the payload.
inline std::int64_t clock_ns(clockid_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
inline std::int64_t now_ns() { return clock_ns(CLOCK_MONOTONIC); }

// Waits until `t` (now_ns scale); sleeps for long waits, spins for the last 100 µs.
inline void wait_until_ns(std::int64_t t) {
    for (;;) {
        std::int64_t left = t - now_ns();
        if (left <= 0) return;
        if (left > 200'000) std::this_thread::sleep_for(std::chrono::nanoseconds(left - 100'000));
    }
}

// --- payloads ---------------------------------------------------------------------------------

// A payload of `size` bytes: "SSSSSSSSSS TTTTTTTTTTTTTTTTTTT " (sequence and send time in ns,
// ASCII so it survives a line-oriented stdin source) then 'x' padding. Sizes under 31 bytes
// carry no stamp (throughput runs do not need one); no byte is a newline.
inline constexpr std::size_t stamp_size = 31;

inline void fill_payload(char* p, std::size_t size) { std::memset(p, 'x', size); }

inline void stamp_payload(char* p, std::size_t size, std::uint64_t seq, std::int64_t t) {
    if (size < stamp_size) return;
    char tmp[stamp_size + 1];
    std::snprintf(tmp, sizeof tmp, "%010" PRIu64 " %019" PRId64 " ", static_cast<std::uint64_t>(seq % 10'000'000'000ULL), t);
    std::memcpy(p, tmp, stamp_size);
}

// Reads back a stamp; false when the payload does not carry one (e.g. a welcome message).
inline bool read_stamp(std::string_view p, std::uint64_t& seq, std::int64_t& t) {
    if (p.size() < stamp_size || p[10] != ' ' || p[30] != ' ') return false;
    std::uint64_t s = 0;
    for (int i = 0; i < 10; ++i) {
        if (p[i] < '0' || p[i] > '9') return false;
        s = s * 10 + static_cast<std::uint64_t>(p[i] - '0');
    }
    std::int64_t v = 0;
    for (int i = 11; i < 30; ++i) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (p[i] - '0');
    }
    seq = s;
    t = v;
    return true;
}

// --- sockets ----------------------------------------------------------------------------------

struct host_port {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
};

inline host_port parse_host_port(const std::string& text) {
    host_port hp;
    auto colon = text.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument("expected HOST:PORT: " + text);
    if (colon > 0) hp.host = text.substr(0, colon);
    hp.port = static_cast<std::uint16_t>(std::stoul(text.substr(colon + 1)));
    return hp;
}

inline sockaddr_in to_sockaddr(const host_port& hp) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(hp.port);
    if (inet_pton(AF_INET, hp.host.c_str(), &sa.sin_addr) != 1)
        throw std::invalid_argument("not an IPv4 address: " + hp.host);
    return sa;
}

// Binds and listens, then announces the port on stdout like `framecast serve` does.
inline int listen_tcp(const std::string& text, int backlog = 4096) {
    auto sa = to_sockaddr(parse_host_port(text));
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) die("bind");
    if (::listen(fd, backlog) != 0) die("listen");
    socklen_t len = sizeof sa;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    std::printf("listening on %s:%u\n", ip, ntohs(sa.sin_port));
    std::fflush(stdout);
    return fd;
}

inline void set_nodelay(int fd) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

inline int accept_one(int lfd) {
    for (;;) {
        int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) return fd;
        if (errno != EINTR) die("accept");
    }
}

// Connects, retrying briefly while the peer is still coming up.
inline int connect_tcp(const std::string& text) {
    auto sa = to_sockaddr(parse_host_port(text));
    for (int attempt = 0;; ++attempt) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return fd;
        ::close(fd);
        if (attempt >= 100) die("connect");
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// send until all `n` bytes are written; on a non-blocking socket it waits in poll() when the
// socket is full (see writev_all).
inline void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                pollfd q{fd, POLLOUT, 0};
                ::poll(&q, 1, -1);
                continue;
            }
            die("send");
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

// Bytes per write of small frames: `segments` whole TCP segments of this connection (its MSS:
// 65,483 bytes on loopback, 4 of them about 256 KiB). A write that ends in a short segment costs
// the pair more than the bytes in it. On loopback, the ceiling's 100 B frames ran at 31-35 M
// msgs/s when written 256 KiB at a time (each write ending in a short segment), and at 62-97 M
// (medians of 3) when cut into writes of exactly 4 segments (docs/bench.md, "Writes of whole
// segments").
inline std::size_t whole_segments(int fd, std::size_t segments = 4) {
    int mss = 0;
    socklen_t len = sizeof mss;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &len) != 0 || mss <= 0) mss = 1460;
    return segments * static_cast<std::size_t>(mss);
}

// How much must be queued before the kernel wakes the ceiling's and framecast-direct's bulk
// receivers (SO_RCVLOWAT; at end of stream a read still returns what is left). Each wake-up
// costs the sender on loopback about 20 us of system time (the extra system time over the extra
// sleeps; likely waking the other vCPU, which this VM's missing PMU cannot confirm), so both
// receivers sleep as long as what they read allows, in the same way:
//
// - Small frames (per_mib, frames under 8 KiB): every read waits for 1 MiB. Without it a pair
//   had two steady states on this machine, and each run fell into one of them. If the reader
//   drains faster than the sender fills, it sleeps after each read, the sender slows down, and
//   the reader keeps catching up. At 100 B that state ran 40-60 M msgs/s, against 80-100 M when
//   the reader stays behind and never sleeps (receiver sleeps: 5,000-15,000 against under 600
//   per run). The state a run fell into decided the ceiling/framecast-direct ratio (0.5x to 2x
//   between runs), not the code measured. A message client cannot do this (a small message
//   would wait behind a megabyte), so the relay rows, which run the real `connect`, do not.
//   docs/bench.md, "Two steady states at small frames".
// - The rest of a large payload, read in place (before_payload): the frame is of no use until
//   all of it is there, so the reader waits for the rest of it, at most 1 MiB, not for every
//   segment. Pinned 1 MiB pairs woke the ceiling's receiver 13,400-17,600 times per 3,000
//   frames against ZeroMQ's 4,400-5,400, and ZeroMQ ran 1.3-1.6x the ceiling (docs/bench.md,
//   "A ceiling that finds its fast path again"). A message client can do this too: no message
//   waits longer than its last byte.
//
// before_read() goes back to the ordinary reads' level; each change is one setsockopt().
class read_waker {
public:
    read_waker(int fd, bool per_mib) : fd_(fd), ordinary_(per_mib ? mib : 1) { set(ordinary_); }
    void before_read() { set(ordinary_); }
    void before_payload(std::size_t left) {
        set(static_cast<int>(std::clamp<std::size_t>(left, 1, mib)));
    }

private:
    static constexpr int mib = 1024 * 1024;
    void set(int bytes) {
        if (bytes == current_) return;
        if (::setsockopt(fd_, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes) != 0) {
            die("SO_RCVLOWAT");
        }
        current_ = bytes;
    }
    int fd_;
    int ordinary_;
    int current_ = 1;  // the socket's default
};

inline void set_nonblocking(int fd, bool on) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) < 0) {
        die("fcntl");
    }
}

// writev until every byte of `iov[0..n)` is written; advances the iovecs in place. On a
// non-blocking socket it waits in poll() when the socket is full.
//
// Large frames are written that way (as framecast's I/O layer and ZeroMQ write): a blocking
// writev of 64 MiB cost the sender more CPU per byte (likely because the socket stays locked
// in the kernel until all of it is queued, so the acknowledgements that free the send buffer
// wait in the socket's backlog). Measured on loopback, 1 MiB frames, 64 per call: 3.9-4.1
// GB/s blocking against 5.1-5.2 GB/s non-blocking (docs/bench.md).
inline void writev_all(int fd, iovec* iov, int n) {
    while (n > 0) {
        ssize_t w = ::writev(fd, iov, std::min(n, IOV_MAX));
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                pollfd p{fd, POLLOUT, 0};
                ::poll(&p, 1, -1);
                continue;
            }
            die("writev");
        }
        auto left = static_cast<std::size_t>(w);
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            ++iov;
            --n;
        }
        if (n > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + left;
            iov->iov_len -= left;
        }
    }
}

// Frames from split_from up are written one at a time in two writes: the header with the first
// bytes of the payload (split_head in all), then the rest of the payload. That is ZeroMQ's
// pattern (its 8 KiB batch, then the message body without a copy). On loopback (AMD EPYC, Linux
// 6.18) it cut the CPU of both ends by 25-35% at 1 MiB against one writev of 64 frames, and ran
// the ceiling's 1 MiB pair at 7.5-8.8 GB/s against 5.0-5.3 (medians of 6-8); from 128 KiB to
// 4 MiB it was as fast or faster, and at 64 KiB slower (docs/bench.md, "Large frames in two
// writes"). A first write of the header alone (or up to 74 bytes) did not do it.
inline constexpr std::size_t split_from = 128 * 1024;
inline constexpr std::size_t split_head = 8 * 1024;

inline void write_split_frame(int fd, const char* header, std::size_t header_len, const char* payload,
                              std::size_t size) {
    const std::size_t head = header_len < split_head ? std::min(size, split_head - header_len) : 0;
    iovec v[2] = {{const_cast<char*>(header), header_len}, {const_cast<char*>(payload), head}};
    writev_all(fd, v, 2);
    if (size > head) write_all(fd, payload + head, size - head);
}

// Raises the soft open-file limit to the hard limit (fan-out with thousands of sockets).
inline void raise_nofile() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
}

// --- results ----------------------------------------------------------------------------------

// One JSON object on one line: {"system":"ceiling","scenario":"throughput",...}.
class result {
public:
    result& add(const char* key, const std::string& value) {
        sep();
        out_ += '"';
        out_ += key;
        out_ += "\":\"";
        out_ += value;  // our values never need escaping
        out_ += '"';
        return *this;
    }
    result& add(const char* key, const char* value) { return add(key, std::string(value)); }
    result& add(const char* key, double value) {
        sep();
        char buf[64];
        std::snprintf(buf, sizeof buf, "\"%s\":%.6g", key, value);
        out_ += buf;
        return *this;
    }
    result& add(const char* key, std::uint64_t value) {
        sep();
        out_ += '"';
        out_ += key;
        out_ += "\":" + std::to_string(value);
        return *this;
    }
    void print() {
        out_ += '}';
        std::printf("%s\n", out_.c_str());
        std::fflush(stdout);
    }

private:
    void sep() { out_ += out_.size() > 1 ? "," : ""; }
    std::string out_ = "{";
};

// Throughput from the first to the last message.
inline result throughput_result(const char* system, std::uint64_t size, std::uint64_t count,
                                std::int64_t ns) {
    double s = static_cast<double>(ns) / 1e9;
    result r;
    r.add("system", system).add("scenario", "throughput").add("size", size).add("count", count)
        .add("seconds", s)
        .add("msgs_per_s", static_cast<double>(count) / s)
        .add("mb_per_s", static_cast<double>(count * size) / s / 1e6);
    return r;
}

// Percentile by nearest rank of sorted samples.
inline double percentile(const std::vector<double>& sorted, double p) {
    if (sorted.empty()) return 0;
    auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size()));
    return sorted[std::min(rank, sorted.size() - 1)];
}

// Round-trip times in µs: summary in the result, every sample to `samples_path` if given.
inline result latency_result(const char* system, std::uint64_t size, std::vector<double> us,
                             const std::string& samples_path) {
    if (!samples_path.empty()) {
        if (FILE* f = std::fopen(samples_path.c_str(), "w")) {
            for (double v : us) std::fprintf(f, "%.3f\n", v);
            std::fclose(f);
        }
    }
    std::sort(us.begin(), us.end());
    double sum = 0;
    for (double v : us) sum += v;
    result r;
    r.add("system", system).add("scenario", "pingpong").add("size", size)
        .add("count", static_cast<std::uint64_t>(us.size()))
        .add("mean_us", us.empty() ? 0.0 : sum / static_cast<double>(us.size()))
        .add("p50_us", percentile(us, 50)).add("p99_us", percentile(us, 99))
        .add("p999_us", percentile(us, 99.9)).add("max_us", us.empty() ? 0.0 : us.back())
        .add("msgs_per_s", us.empty() ? 0.0 : 1e6 * static_cast<double>(us.size()) / sum);
    return r;
}

}  // namespace bench
