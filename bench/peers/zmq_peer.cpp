// ZeroMQ (libzmq 4.3 via cppzmq) over loopback TCP, as libzmq's own perf/ tools use it: one
// message per send, default options unless noted. Each side is its own process.
//
//   bench_zmq pull --listen 127.0.0.1:0 --size N --count M    throughput result (local_thr)
//   bench_zmq push --connect HOST:PORT --size N --count M       (remote_thr)
//   bench_zmq rep  --listen 127.0.0.1:0                         ping-pong server (local_lat)
//   bench_zmq req  --connect HOST:PORT --size N --count M [--warmup W] [--samples FILE]
//   bench_zmq pub  --listen 127.0.0.1:0 --k K --size N --count M [--rate R] [--hwm 0]
//       an XPUB that waits until K subscriptions arrived (so no message goes to a slow joiner's
//       void), then publishes. --hwm 0 (the default here) lifts the high-water mark on both
//       sides so no message is dropped and delivered msgs/s compares like for like with the
//       lossless framed peers; with ZeroMQ's default (1000) a saturating publisher outruns the
//       subscribers and most messages are dropped within milliseconds
//   bench_zmq subs --connect HOST:PORT --k K --size N --count M [--hwm 0] [--idle-ms 2000]
//                  [--out FILE]
//       K SUB sockets in one process (one context, one I/O thread), drained round-robin
#include <memory>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common.hpp"
#include "fanout.hpp"

namespace {

using namespace bench;

// "127.0.0.1:0" -> "tcp://127.0.0.1:*"
std::string bind_address(const std::string& text) {
    auto hp = parse_host_port(text);
    return "tcp://" + hp.host + ":" + (hp.port == 0 ? std::string("*") : std::to_string(hp.port));
}

void announce(zmq::socket_t& s) {
    std::string ep = s.get(zmq::sockopt::last_endpoint);  // tcp://127.0.0.1:PORT
    std::printf("listening on %s\n", ep.substr(ep.find("//") + 2).c_str());
    std::fflush(stdout);
}

int run_pull(const options& o) {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pull);
    s.bind(bind_address(o.str("listen", "127.0.0.1:0")));
    announce(s);
    std::uint64_t size = o.u64("size", 100), count = o.u64("count", 1'000'000);
    zmq::message_t msg;
    std::int64_t start = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        if (!s.recv(msg)) die("zmq recv");
        if (msg.size() != size) die("zmq pull: wrong size");
        if (i == 0) start = now_ns();
    }
    // Like local_thr, the clock starts at the first message, so count-1 messages are timed.
    throughput_result("zeromq", size, count, now_ns() - start).print();
    return 0;
}

int run_push(const options& o) {
    std::size_t size = o.u64("size", 100);
    std::uint64_t count = o.u64("count", 1'000'000);
    std::string payload(size, 'x');  // before the context: it must outlive the lingering sends
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::push);
    s.connect("tcp://" + o.str("connect"));
    // Large messages go zero-copy (zmq_msg_init_data, nothing to free: the payload outlives the
    // socket), as framecast-direct gathers large payloads without copying; small ones are copied,
    // which for ZeroMQ is the cheaper way.
    const bool zero_copy = size >= 8 * 1024;
    for (std::uint64_t i = 0; i < count; ++i) {
        zmq::message_t msg = zero_copy ? zmq::message_t(payload.data(), payload.size(), nullptr, nullptr)
                                       : zmq::message_t(payload.data(), payload.size());
        s.send(msg, zmq::send_flags::none);
    }
    return 0;  // the context's destructor lingers until everything is delivered
}

int run_rep(const options& o) {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::rep);
    s.bind(bind_address(o.str("listen", "127.0.0.1:0")));
    announce(s);
    zmq::message_t msg;
    for (;;) {
        if (!s.recv(msg)) return 0;
        s.send(msg, zmq::send_flags::none);
    }
}

int run_req(const options& o) {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::req);
    s.set(zmq::sockopt::linger, 0);
    s.connect("tcp://" + o.str("connect"));
    std::size_t size = o.u64("size", 100);
    std::uint64_t count = o.u64("count", 10'000), warmup = o.u64("warmup", 1'000);
    std::string payload(size, 'x');
    std::vector<double> us;
    us.reserve(count);
    zmq::message_t reply;
    for (std::uint64_t i = 0; i < warmup + count; ++i) {
        std::int64_t t0 = now_ns();
        s.send(zmq::buffer(payload), zmq::send_flags::none);
        if (!s.recv(reply) || reply.size() != size) die("zmq req: bad reply");
        if (i >= warmup) us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
    }
    latency_result("zeromq", size, std::move(us), o.str("samples")).print();
    std::exit(0);  // the REP side loops forever; the driver stops it
}

int run_pub(const options& o) {
    raise_nofile();
    zmq::context_t ctx;
    ctx.set(zmq::ctxopt::max_sockets, 65536);
    zmq::socket_t s(ctx, zmq::socket_type::xpub);
    s.set(zmq::sockopt::xpub_verbose, 1);
    s.set(zmq::sockopt::sndhwm, static_cast<int>(o.u64("hwm", 0)));
    s.bind(bind_address(o.str("listen", "127.0.0.1:0")));
    announce(s);
    std::uint64_t k = o.u64("k", 1), count = o.u64("count", 100'000);
    std::size_t size = std::max<std::size_t>(o.u64("size", 100), stamp_size);
    double rate = o.f64("rate", 0);
    zmq::message_t sub;
    for (std::uint64_t i = 0; i < k; ++i)
        if (!s.recv(sub)) die("zmq xpub recv");
    std::fprintf(stderr, "zeromq pub: %llu subscriptions\n", static_cast<unsigned long long>(k));
    std::string payload(size, 'x');
    std::int64_t start = now_ns();
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        if (rate > 0) wait_until_ns(start + static_cast<std::int64_t>(static_cast<double>(seq) * 1e9 / rate));
        stamp_payload(payload.data(), size, seq, now_ns());
        s.send(zmq::buffer(payload), zmq::send_flags::none);
    }
    return 0;
}

int run_subs(const options& o) {
    raise_nofile();
    std::uint64_t k = o.u64("k", 1), count = o.u64("count", 100'000), size = o.u64("size", 100);
    const std::int64_t idle_ns = static_cast<std::int64_t>(o.u64("idle-ms", 2000)) * 1'000'000;
    const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(o.u64("deadline-s", 60)) * 1'000'000'000;
    zmq::context_t ctx;
    ctx.set(zmq::ctxopt::max_sockets, 65536);
    std::vector<zmq::socket_t> subs;
    subs.reserve(k);
    for (std::uint64_t i = 0; i < k; ++i) {
        subs.emplace_back(ctx, zmq::socket_type::sub);
        subs.back().set(zmq::sockopt::linger, 0);
        subs.back().set(zmq::sockopt::rcvhwm, static_cast<int>(o.u64("hwm", 0)));
        subs.back().set(zmq::sockopt::subscribe, "");
        subs.back().connect("tcp://" + o.str("connect"));
    }
    std::printf("ready\n");
    std::fflush(stdout);
    fanout_tracker tracker(k, count);
    std::vector<char> done(k, 0);
    std::uint64_t finished = 0;
    zmq::message_t msg;
    std::vector<zmq::pollitem_t> items;
    for (auto& s : subs) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
    std::int64_t last_activity = now_ns();
    while (finished < k) {
        std::uint64_t got = 0;
        for (std::size_t i = 0; i < subs.size(); ++i) {
            std::int64_t at = 0;
            for (std::uint64_t m = 0; subs[i].recv(msg, zmq::recv_flags::dontwait); ++m) {
                ++got;
                // The clock once per 64 messages, as the framed subscribers read it once per
                // recv() (a 256 KiB read holds 2,300 frames of 100 B; fanout.hpp). Unlike one
                // recv(), later messages of a group may have reached libzmq's queue after the
                // clock was read: they are stamped early, which can only flatter ZeroMQ's rows.
                if (m % 64 == 0) at = now_ns();
                std::string_view p(static_cast<const char*>(msg.data()), msg.size());
                std::uint64_t seq = 0;
                if (tracker.on_message(p, at, seq) && seq + 1 == count && !done[i]) {
                    done[i] = 1;
                    ++finished;
                }
            }
        }
        std::int64_t now = now_ns();
        if (got > 0) {
            last_activity = now;
            continue;
        }
        if ((tracker.deliveries() > 0 && now - last_activity > idle_ns) || now > deadline) break;
        zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
    }
    tracker.report("zeromq", size, o.str("out"));
    std::exit(0);  // skip lingering teardown of K sockets
}

}  // namespace

int main(int argc, char** argv) {
    options o(argc, argv);
    try {
        if (o.mode() == "pull") return run_pull(o);
        if (o.mode() == "push") return run_push(o);
        if (o.mode() == "rep") return run_rep(o);
        if (o.mode() == "req") return run_req(o);
        if (o.mode() == "pub") return run_pub(o);
        if (o.mode() == "subs") return run_subs(o);
    } catch (const zmq::error_t& e) {
        std::fprintf(stderr, "bench_zmq: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "bench_zmq: unknown mode %s\n", o.mode().c_str());
    return 2;
}
