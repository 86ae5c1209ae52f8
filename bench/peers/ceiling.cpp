// The ceiling for our protocol: the least a program can do and still move framed messages over
// TCP. The sender (TCP_NODELAY, as framecast's sockets) writes prebuilt frames in writes of
// exactly 4 whole TCP segments (see whole_segments) on a non-blocking socket, waiting in poll()
// when it is full (from 8 KiB up, 64 frames per writev() gathering headers and one shared
// payload, as framecast's sender does; from 128 KiB up, each frame in two writes, see
// write_split_frame in common.hpp); the blocking receiver does
// 256 KiB reads and finds frame boundaries in place, and reads the rest of a payload of 64 KiB
// or more straight into a buffer of the payload's size (one recv() where framecast's decoder
// does one), asking to be woken once it is all there or 1 MiB of it is; below 8 KiB it asks to
// be woken per MiB, as framecast-direct's receiver does (see read_waker in common.hpp). Nothing
// framecast does can
// be faster, so every other figure is read as a fraction of this one; bench/run.py warns when a
// row beats it.
//
//   bench_ceiling recv --listen 127.0.0.1:0 --size N --count M    prints the throughput result
//   bench_ceiling send --connect HOST:PORT --size N --count M
//   bench_ceiling echo --listen 127.0.0.1:0                        ping-pong server
//   bench_ceiling ping --connect HOST:PORT --size N --count M [--warmup W] [--samples FILE]
//   bench_ceiling pub  --listen 127.0.0.1:0 --k K --size N --count M [--rate R] [--batch-bytes B]
//                      [--welcome 1]
//       fan-out: accepts K subscribers, then writes each batch of frames to all of them, each
//       at its own pace on a non-blocking socket, as the server does (R messages/s when R > 0,
//       else as fast as the subscribers read; B bytes of frames per batch, 256 KiB by default:
//       smaller batches were slower at K = 10,000; about 128 KiB of each stream at most waits
//       unsent in the kernel, see fanout_unsent_limit). With --welcome 1 it starts as `framecast
//       serve --source stdin` does in bench/run.py: a welcome frame to each subscriber as it is
//       accepted, and the first batch once a line arrives on stdin (the driver writes it when
//       every subscriber has its welcome). Closes at the end.
#include <string>
#include <vector>

#include <sys/epoll.h>
#include <sys/uio.h>

#include "common.hpp"
#include "raw_frames.hpp"

namespace {

using namespace bench;

constexpr std::size_t read_size = 256 * 1024;
// The rest of a payload at least this long is read straight into its place (framecast-direct:
// payload_space() of a quarter of its read buffer or more).
constexpr std::size_t in_place_from = read_size / 4;
constexpr std::size_t batch_bytes = 256 * 1024;
constexpr std::size_t gather_threshold = 8 * 1024;  // as bench_framecast_direct
constexpr std::size_t max_gather = 64;

// `n` frames of `size` bytes, back to back.
std::string build_frames(std::size_t size, std::size_t n) {
    std::string buf(n * (header_size + size), 'x');
    for (std::size_t i = 0; i < n; ++i) put_header(&buf[i * (header_size + size)], size);
    return buf;
}

std::size_t frames_per_batch(std::size_t size, std::size_t bytes = batch_bytes) {
    return std::max<std::size_t>(1, bytes / (header_size + size));
}

int run_recv(const options& o) {
    int lfd = listen_tcp(o.str("listen", "127.0.0.1:0"));
    std::uint64_t size = o.u64("size", 100), count = o.u64("count", 1'000'000);
    int fd = accept_one(lfd);
    std::vector<char> buf(read_size);
    // Where the rest of a payload longer than a read goes, in one recv().
    // From a quarter of a read up, as framecast-direct reads into payload_space().
    std::vector<char> payload(size >= in_place_from ? size : 0);
    raw_parser parser;
    read_waker waker(fd, size < gather_threshold);  // as framecast-direct's receiver
    std::uint64_t frames = 0;
    std::int64_t start = 0;
    while (frames < count) {
        const std::uint64_t left = parser.payload_left();
        char* into = buf.data();
        std::size_t room = buf.size();
        if (left >= in_place_from && left <= payload.size()) {
            into = payload.data();
            room = static_cast<std::size_t>(left);
            waker.before_payload(room);
        } else {
            waker.before_read();
        }
        ssize_t n = ::recv(fd, into, room, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (start == 0) start = now_ns();
        frames += parser.feed(into, static_cast<std::size_t>(n));
    }
    std::int64_t ns = now_ns() - start;
    if (frames != count) {
        std::fprintf(stderr, "ceiling recv: got %llu of %llu frames\n",
                     static_cast<unsigned long long>(frames), static_cast<unsigned long long>(count));
        return 1;
    }
    throughput_result("ceiling", size, count, ns).print();
    return 0;
}

// Large frames: one prebuilt header and one payload, gathered max_gather times per writev(); from
// split_from up, each frame in two writes (see write_split_frame).
void send_gathered(int fd, std::size_t size, std::uint64_t count) {
    std::string header(header_size, ' ');
    put_header(header.data(), size);
    const std::string payload(size, 'x');
    std::vector<iovec> iov(2 * max_gather);
    set_nonblocking(fd, true);  // see writev_all
    if (size >= split_from) {
        for (std::uint64_t i = 0; i < count; ++i)
            write_split_frame(fd, header.data(), header.size(), payload.data(), size);
    } else {
        for (std::uint64_t sent = 0; sent < count;) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(max_gather, count - sent));
            for (std::size_t i = 0; i < n; ++i) {
                iov[2 * i] = {header.data(), header.size()};
                iov[2 * i + 1] = {const_cast<char*>(payload.data()), payload.size()};
            }
            writev_all(fd, iov.data(), static_cast<int>(2 * n));
            sent += n;
        }
    }
    set_nonblocking(fd, false);
    ::shutdown(fd, SHUT_WR);
    char c;
    while (::recv(fd, &c, 1, 0) > 0) {}
}

int run_send(const options& o) {
    int fd = connect_tcp(o.str("connect"));
    set_nodelay(fd);  // as framecast's sockets
    std::size_t size = o.u64("size", 100);
    std::uint64_t count = o.u64("count", 1'000'000);
    if (size >= gather_threshold) {
        send_gathered(fd, size, count);
        return 0;
    }
    // The stream is the same frame over and over: every write is `chunk` bytes of it (whole
    // TCP segments, see whole_segments), taken from a prebuilt run of frames at the stream
    // offset's place within a frame.
    const std::size_t frame = header_size + size;
    const std::size_t chunk = whole_segments(fd);
    const std::string run = build_frames(size, chunk / frame + 2);
    const std::uint64_t total = count * frame;
    set_nonblocking(fd, true);  // as framecast's I/O layer writes (see writev_all)
    for (std::uint64_t off = 0; off < total;) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, total - off));
        write_all(fd, run.data() + off % frame, n);
        off += n;
    }
    set_nonblocking(fd, false);
    ::shutdown(fd, SHUT_WR);
    char c;
    while (::recv(fd, &c, 1, 0) > 0) {}  // wait for the receiver to finish and close
    return 0;
}

// Reads exactly one frame (the ping-pong peers never have two in flight) into `frame`.
bool read_frame(int fd, std::string& frame, std::vector<char>& buf) {
    frame.clear();
    raw_parser parser;
    for (;;) {
        ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        frame.append(buf.data(), static_cast<std::size_t>(n));
        if (parser.feed(buf.data(), static_cast<std::size_t>(n)) > 0) return true;
    }
}

int run_echo(const options& o) {
    int lfd = listen_tcp(o.str("listen", "127.0.0.1:0"));
    int fd = accept_one(lfd);
    set_nodelay(fd);
    std::vector<char> buf(read_size);
    std::string frame;
    while (read_frame(fd, frame, buf)) write_all(fd, frame.data(), frame.size());
    return 0;
}

int run_ping(const options& o) {
    int fd = connect_tcp(o.str("connect"));
    set_nodelay(fd);
    std::size_t size = o.u64("size", 100);
    std::uint64_t count = o.u64("count", 10'000), warmup = o.u64("warmup", 1'000);
    std::string msg = build_frames(size, 1), reply;
    std::vector<char> buf(read_size);
    std::vector<double> us;
    us.reserve(count);
    for (std::uint64_t i = 0; i < warmup + count; ++i) {
        std::int64_t t0 = now_ns();
        write_all(fd, msg.data(), msg.size());
        if (!read_frame(fd, reply, buf)) die("ceiling ping: peer closed");
        if (i >= warmup) us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
    }
    latency_result("ceiling", size, std::move(us), o.str("samples")).print();
    return 0;
}

// Writes `n` bytes of `data` to every subscriber, each at its own pace, as the server does: the
// sockets are non-blocking, each takes what it can, and epoll says which of the ones that were
// full can take more. A blocking write to each in turn (what this did until session 14) waited
// for each slow subscriber while the others sat idle, where a batch (256 KiB) is more than a
// socket takes (K <= 1,000). At K = 10,000 a batch is 44 KB, every socket took it whole, and the
// row is as fast as the one subscriber process reads (docs/bench.md, "Large frames in two
// writes, and the fan-out ceiling's writer").
class fanout_writer {
public:
    explicit fanout_writer(std::vector<int> subs) : subs_(std::move(subs)), armed_(subs_.size(), false) {
        ep_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) die("epoll_create1");
        for (int fd : subs_) set_nonblocking(fd, true);
    }
    fanout_writer(const fanout_writer&) = delete;
    fanout_writer& operator=(const fanout_writer&) = delete;
    ~fanout_writer() {
        for (int fd : subs_) ::close(fd);
        ::close(ep_);
    }

    void write(const char* data, std::size_t n) {
        off_.assign(subs_.size(), 0);
        std::size_t left = 0;  // subscribers that still want bytes of this batch
        for (std::size_t i = 0; i < subs_.size(); ++i) left += try_write(i, data, n) ? 0 : 1;
        std::vector<epoll_event> ev(std::min<std::size_t>(subs_.size(), 1024));
        while (left > 0) {
            int m = ::epoll_wait(ep_, ev.data(), static_cast<int>(ev.size()), -1);
            if (m < 0 && errno == EINTR) continue;
            if (m < 0) die("epoll_wait");
            for (int e = 0; e < m; ++e) {
                std::size_t i = ev[e].data.u64;
                if (off_[i] < n && try_write(i, data, n)) --left;
            }
        }
    }

private:
    // True when subscriber i has all n bytes; else it waits in epoll (one-shot) for room.
    bool try_write(std::size_t i, const char* data, std::size_t n) {
        const int fd = subs_[i];
        while (off_[i] < n) {
            ssize_t w = ::send(fd, data + off_[i], n - off_[i], MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                epoll_event e{};
                e.events = EPOLLOUT | EPOLLONESHOT;
                e.data.u64 = i;
                const int op = armed_[i] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
                if (::epoll_ctl(ep_, op, fd, &e) != 0) die("epoll_ctl");
                armed_[i] = true;
                return false;
            }
            if (w < 0) die("send");
            off_[i] += static_cast<std::size_t>(w);
        }
        return true;
    }

    std::vector<int> subs_;
    std::vector<bool> armed_;
    std::vector<std::size_t> off_;
    int ep_ = -1;
};

// About this much of a subscriber's stream at most waits unsent in the kernel
// (TCP_NOTSENT_LOWAT; one send() can pass it by a segment): past it, send() says EAGAIN and the
// writer waits in epoll, as for a full socket. Without it the publisher, which runs ahead of
// the one subscriber process that reads every connection, left most of each batch queued
// behind the receiver's window. On loopback such segments go out when the receiver's window
// update is processed, which is mostly in the process that sent the update: the subscriber
// paid for the publisher's transmits (pinned, K = 100, `perf stat -e net:netif_rx` on the
// subscriber: 2,600-8,400 loopback transmits in its context against 1,350-1,970 with the
// limit; 0.126-0.246 s of its CPU against 0.116-0.192 s). framecast serve, slower to write,
// mostly sent in its own context and so beat the ceiling at K = 100 (docs/bench.md, "Fan-out
// pinned").
constexpr int fanout_unsent_limit = 128 * 1024;

void limit_unsent(int fd) {
    if (::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &fanout_unsent_limit, sizeof fanout_unsent_limit) != 0)
        die("setsockopt(TCP_NOTSENT_LOWAT)");
}

int run_pub(const options& o) {
    raise_nofile();
    int lfd = listen_tcp(o.str("listen", "127.0.0.1:0"));
    std::uint64_t k = o.u64("k", 1), count = o.u64("count", 100'000);
    std::size_t size = std::max<std::size_t>(o.u64("size", 100), stamp_size);
    double rate = o.f64("rate", 0);
    std::vector<int> subs;
    const bool welcome = o.u64("welcome", 0) != 0;
    static constexpr char welcome_frame[] = "11        bench-ready";
    for (std::uint64_t i = 0; i < k; ++i) {
        subs.push_back(accept_one(lfd));
        set_nodelay(subs.back());  // as framecast's sockets
        limit_unsent(subs.back());
        if (welcome) write_all(subs.back(), welcome_frame, sizeof welcome_frame - 1);
    }
    std::fprintf(stderr, "ceiling pub: %zu subscribers connected\n", subs.size());
    // Published while the subscriber process was still opening its connections, the same
    // batches cost that process 1.2-1.3x the CPU per delivery at K = 10,000 (docs/bench.md,
    // "The fan-out subscriber"); so the harness starts this one as it starts framecast serve.
    char line[16];
    if (welcome && !std::fgets(line, sizeof line, stdin)) die("stdin: no start line");
    fanout_writer out(std::move(subs));
    // Paced: one frame per write. Saturated: batches, stamped when built; a batch is rewritten
    // only when every subscriber has all of it.
    std::size_t per = rate > 0 ? 1 : frames_per_batch(size, o.u64("batch-bytes", batch_bytes));
    std::string batch = build_frames(size, per);
    std::int64_t start = now_ns();
    for (std::uint64_t seq = 0; seq < count;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(per, count - seq));
        if (rate > 0) wait_until_ns(start + static_cast<std::int64_t>(static_cast<double>(seq) * 1e9 / rate));
        std::int64_t t = now_ns();
        for (std::size_t i = 0; i < n; ++i)
            stamp_payload(&batch[i * (header_size + size) + header_size], size, seq + i, t);
        out.write(batch.data(), n * (header_size + size));
        seq += n;
    }
    return 0;  // ~fanout_writer closes every subscriber
}

}  // namespace

int main(int argc, char** argv) {
    options o(argc, argv);
    if (o.mode() == "recv") return run_recv(o);
    if (o.mode() == "send") return run_send(o);
    if (o.mode() == "echo") return run_echo(o);
    if (o.mode() == "ping") return run_ping(o);
    if (o.mode() == "pub") return run_pub(o);
    std::fprintf(stderr, "bench_ceiling: unknown mode %s\n", o.mode().c_str());
    return 2;
}
