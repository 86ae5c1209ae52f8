// framecast direct: the framecast codec over plain blocking sockets, used the way framecast's
// I/O layer uses it (TCP_NODELAY, as framecast's sockets). The sender either writes small
// frames into one batch buffer (write_frame; the client library's writer does this) and sends
// it in writes of whole TCP segments, as the ceiling does, or encodes the headers of large ones
// with encode_header and gathers header and payload into writev without copying the payload,
// 64 frames per call (from 128 KiB up: each frame in two writes, header and first bytes, then
// the rest, as the ceiling and ZeroMQ write them; see write_split_frame in common.hpp; the
// server's writer does not do this yet). The receiver feeds 256 KiB reads to
// framecast::decoder::for_each_frame(), which hands out payloads as views into the read buffer;
// the rest of a payload longer than what is left of a read is read straight into the decoder
// (payload_space/commit), as a client reading large frames would, waking once it is all there
// or 1 MiB of it is. Below 8 KiB it asks to be woken per MiB, as the ceiling's receiver does
// and a message client could not (both: read_waker in common.hpp): these rows measure the
// codec's per-frame work, the relay rows the real client.
//
// Until the client library lands in main this is "framecast library sender -> receiver"; when it
// does, the peer can switch to it (include/framecast/io/client.hpp).
//
//   bench_framecast_direct recv --listen 127.0.0.1:0 --size N --count M
//   bench_framecast_direct send --connect HOST:PORT --size N --count M
//   bench_framecast_direct echo --listen 127.0.0.1:0
//   bench_framecast_direct ping --connect HOST:PORT --size N --count M [--warmup W] [--samples F]
#include <algorithm>
#include <string>
#include <vector>

#include <framecast/codec.hpp>

#include "common.hpp"

namespace {

using namespace bench;

constexpr std::size_t read_size = 256 * 1024;
constexpr std::size_t gather_threshold = 8 * 1024;  // from here on, writev beats a copy
constexpr std::size_t max_gather = 64;               // frames per writev, as in the server

// Small frames: written into one batch buffer (write_frame) and sent in writes of whole TCP
// segments, as the ceiling's (see whole_segments); what is past the last whole segment moves to
// the front and goes with the next write. A function of its own, with the loop's state in
// locals: inlined into main with the rest, the loop kept its counter, its bound and the payload
// in memory across the payload's memcpy (docs/bench.md, "Paired repeats").
[[gnu::noinline]] void send_small_frames(int fd, std::string_view payload, std::uint64_t count) {
    const std::size_t chunk = whole_segments(fd);
    std::vector<char> batch(chunk + payload.size() + framecast::max_header_size);
    char* const base = batch.data();
    char* const full = base + chunk;
    char* at = base;
    std::error_code ec;
    set_nonblocking(fd, true);  // as the I/O layer writes, and the ceiling (see writev_all)
    for (std::uint64_t left = count; left > 0; --left) {
        const std::size_t n = framecast::write_frame(at, payload, ec);
        if (n == 0) [[unlikely]] die(ec.message().c_str());
        at += n;
        if (at >= full) [[unlikely]] {
            write_all(fd, base, chunk);
            const auto rest = static_cast<std::size_t>(at - full);
            std::memcpy(base, full, rest);
            at = base + rest;
        }
    }
    if (at > base) write_all(fd, base, static_cast<std::size_t>(at - base));
    set_nonblocking(fd, false);
}

// Writes frames of `payload`, `count` times, as the I/O layer would.
void send_frames(int fd, std::string_view payload, std::uint64_t count) {
    if (payload.size() < gather_threshold) {
        send_small_frames(fd, payload, count);
        return;
    }
    std::vector<framecast::frame_header> headers(max_gather);
    std::vector<iovec> iov(2 * max_gather);
    set_nonblocking(fd, true);  // non-blocking, as the I/O layer writes (see writev_all)
    if (payload.size() >= split_from) {
        for (std::uint64_t i = 0; i < count; ++i) {
            framecast::encode_header(payload.size(), headers[0]);
            write_split_frame(fd, headers[0].data(), headers[0].size(), payload.data(), payload.size());
        }
        set_nonblocking(fd, false);
        return;
    }
    for (std::uint64_t sent = 0; sent < count;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(max_gather, count - sent));
        for (std::size_t i = 0; i < n; ++i) {
            framecast::encode_header(payload.size(), headers[i]);
            iov[2 * i] = {const_cast<char*>(headers[i].data()), headers[i].size()};
            iov[2 * i + 1] = {const_cast<char*>(payload.data()), payload.size()};
        }
        writev_all(fd, iov.data(), static_cast<int>(2 * n));
        sent += n;
    }
    set_nonblocking(fd, false);
}

int run_recv(const options& o) {
    int lfd = listen_tcp(o.str("listen", "127.0.0.1:0"));
    std::uint64_t size = o.u64("size", 100), count = o.u64("count", 1'000'000);
    int fd = accept_one(lfd);
    std::vector<char> buf(read_size);
    framecast::decoder dec;
    // A reader of large frames keeps its buffer, as `connect` does (no allocation and no page
    // faults of fresh memory per frame).
    dec.retain_capacity(std::max<std::size_t>(size, framecast::decoder::default_retained_capacity));
    read_waker waker(fd, size < gather_threshold);  // as the ceiling's receiver
    std::uint64_t frames = 0, bytes = 0;
    std::int64_t start = 0;
    while (frames < count) {
        // Inside a payload longer than what is left of the read buffer: read the rest of it
        // straight into the decoder, in one recv(), so a frame spanning reads costs no
        // gathering copy, and sleep until it is all there (see read_waker).
        if (auto space = dec.payload_space(); space.size() >= buf.size() / 4) {
            waker.before_payload(space.size());
            ssize_t n = ::recv(fd, space.data(), space.size(), 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            auto ev = dec.commit(static_cast<std::size_t>(n));
            if (ev == framecast::decode_event::frame) {
                ++frames;
                bytes += dec.payload().size();
            } else if (ev != framecast::decode_event::need_more) {
                std::fprintf(stderr, "direct recv: %s\n", dec.error_message().c_str());
                return 1;
            }
            continue;
        }
        waker.before_read();
        ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (start == 0) start = now_ns();
        // for_each_frame(): the frames of this read, their place kept in registers.
        std::span<const char> in(buf.data(), static_cast<std::size_t>(n));
        const auto ev = dec.for_each_frame(in, [&](std::string_view payload) {
            ++frames;
            bytes += payload.size();
        });
        if (ev != framecast::decode_event::need_more) {
            std::fprintf(stderr, "direct recv: %s\n", dec.error_message().c_str());
            return 1;
        }
    }
    std::int64_t ns = now_ns() - start;
    if (frames != count || bytes != count * size) {
        std::fprintf(stderr, "direct recv: got %llu of %llu frames\n",
                     static_cast<unsigned long long>(frames), static_cast<unsigned long long>(count));
        return 1;
    }
    throughput_result("framecast-direct", size, count, ns).print();
    return 0;
}

int run_send(const options& o) {
    int fd = connect_tcp(o.str("connect"));
    set_nodelay(fd);  // as framecast's sockets
    std::string payload(o.u64("size", 100), 'x');
    send_frames(fd, payload, o.u64("count", 1'000'000));
    ::shutdown(fd, SHUT_WR);
    char c;
    while (::recv(fd, &c, 1, 0) > 0) {}
    return 0;
}

// One decoded frame at a time (ping-pong never has two in flight): false at end of stream.
class frame_reader {
public:
    // in_ starts as an empty view of the buffer, not a null span: decoder::next() memcpy()s from
    // in.data() even when nothing is left (UBSan: null source, size 0; reported to the codec).
    explicit frame_reader(int fd) : fd_(fd), buf_(read_size), in_(buf_.data(), 0) {}
    bool next(std::string_view& payload) {
        for (;;) {
            auto ev = dec_.next(in_);
            if (ev == framecast::decode_event::frame) {
                payload = dec_.payload();
                return true;
            }
            if (ev == framecast::decode_event::error) die(dec_.error_message().c_str());
            ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            in_ = std::span<const char>(buf_.data(), static_cast<std::size_t>(n));
        }
    }

private:
    int fd_;
    std::vector<char> buf_;
    std::span<const char> in_;
    framecast::decoder dec_;
};

void send_one(int fd, std::string_view payload) {
    framecast::frame_header h;
    framecast::encode_header(payload.size(), h);
    iovec iov[2] = {{const_cast<char*>(h.data()), h.size()},
                    {const_cast<char*>(payload.data()), payload.size()}};
    writev_all(fd, iov, 2);
}

int run_echo(const options& o) {
    int lfd = listen_tcp(o.str("listen", "127.0.0.1:0"));
    int fd = accept_one(lfd);
    set_nodelay(fd);
    frame_reader reader(fd);
    std::string_view p;
    while (reader.next(p)) send_one(fd, p);
    return 0;
}

int run_ping(const options& o) {
    int fd = connect_tcp(o.str("connect"));
    set_nodelay(fd);
    std::size_t size = o.u64("size", 100);
    std::uint64_t count = o.u64("count", 10'000), warmup = o.u64("warmup", 1'000);
    std::string payload(size, 'x');
    frame_reader reader(fd);
    std::vector<double> us;
    us.reserve(count);
    std::string_view reply;
    for (std::uint64_t i = 0; i < warmup + count; ++i) {
        std::int64_t t0 = now_ns();
        send_one(fd, payload);
        if (!reader.next(reply) || reply.size() != size) die("direct ping: bad reply");
        if (i >= warmup) us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
    }
    latency_result("framecast-direct", size, std::move(us), o.str("samples")).print();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    options o(argc, argv);
    if (o.mode() == "recv") return run_recv(o);
    if (o.mode() == "send") return run_send(o);
    if (o.mode() == "echo") return run_echo(o);
    if (o.mode() == "ping") return run_ping(o);
    std::fprintf(stderr, "bench_framecast_direct: unknown mode %s\n", o.mode().c_str());
    return 2;
}
