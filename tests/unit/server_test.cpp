// The server's rooms driven over the in-memory transport: no sockets, short timeouts, and the
// io_context run until a condition holds (never a sleep).
#include <chrono>
#include <functional>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "decode_helpers.hpp"
#include "framecast/io/server.hpp"
#include "close_reason.hpp"
#include "rate_limiter.hpp"
#include "transport/memory.hpp"

using namespace framecast;
using namespace framecast::io;
using namespace std::chrono_literals;
using pipe_ptr = std::shared_ptr<memory_transport::pipe>;

namespace {

using test::frame;

struct server_test : ::testing::Test {
    asio::io_context io;
    std::ostringstream log;
    std::unique_ptr<server> srv;

    server_test() {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(log);
        auto logger = std::make_shared<spdlog::logger>("test", sink);
        logger->set_level(spdlog::level::info);
        spdlog::set_default_logger(logger);
    }
    ~server_test() override {
        auto quiet = std::make_shared<spdlog::sinks::null_sink_st>();
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("quiet", quiet));
    }

    static server_options options() {
        server_options o;
        o.welcome.clear();
        o.idle_timeout = 0ms;
        return o;
    }
    void make(server_options o) {
        srv = std::make_unique<server>(io, std::move(o));
        srv->start();
    }
    pipe_ptr connect(const std::string& name) {
        auto p = std::make_shared<memory_transport::pipe>(io.get_executor());
        srv->admit(std::make_unique<memory_transport>(p, name));
        return p;
    }
    // Runs the io_context until `done` holds; false after `limit`.
    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 3000ms) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            if (io.stopped()) io.restart();
            io.run_one_for(5ms);
        }
        return true;
    }
    void settle() {
        if (io.stopped()) io.restart();
        io.poll();
    }
    bool logged(std::string_view text) const { return log.str().find(text) != std::string::npos; }
    const server_counters& counters() const { return srv->counters(); }
};

std::string join_frame(std::string_view name) { return frame(name); }

}  // namespace

TEST_F(server_test, framing_error_closes_with_bad_input) {
    make(options());
    auto p = connect("mem:1");
    p->feed("abc       x");
    ASSERT_TRUE(run_until([&] { return p->closed; }));
    EXPECT_EQ(counters().decode_errors, 1u);
    EXPECT_TRUE(logged("client mem:1 disconnected: bad input: ")) << log.str();
}

TEST_F(server_test, truncated_frame_at_end_of_stream_is_bad_input_and_clean_end_is_not) {
    make(options());
    auto cut = connect("mem:cut");
    auto clean = connect("mem:clean");
    cut->feed("5         ab");
    cut->feed_eof();
    clean->feed(frame("hello"));
    clean->feed_eof();
    ASSERT_TRUE(run_until([&] { return cut->closed && clean->closed; }));
    EXPECT_EQ(counters().decode_errors, 1u);
    EXPECT_TRUE(logged("client mem:clean disconnected: closed by peer")) << log.str();
    EXPECT_TRUE(logged("client mem:cut disconnected: bad input: ")) << log.str();
}

TEST_F(server_test, idle_timeout_closes_a_client_stuck_mid_frame_only) {
    auto o = options();
    o.idle_timeout = 40ms;
    make(o);
    auto slowloris = connect("mem:slow");
    auto quiet = connect("mem:quiet");
    slowloris->feed("5         ab");
    quiet->feed(frame("done"));
    ASSERT_TRUE(run_until([&] { return slowloris->closed; }));
    EXPECT_EQ(counters().idle_timeouts, 1u);
    EXPECT_TRUE(logged("client mem:slow disconnected: idle timeout: stuck in the middle of a "
                       "frame for 40 ms (")) << log.str();
    EXPECT_FALSE(logged("connection closed")) << log.str();
    EXPECT_FALSE(quiet->closed);
}

TEST_F(server_test, flood_closes_a_client_over_max_rate) {
    auto o = options();
    o.max_rate = 5;
    make(o);
    auto p = connect("mem:1");
    std::string burst;
    for (int i = 0; i < 20; ++i) burst += frame("m");
    p->feed(burst);
    ASSERT_TRUE(run_until([&] { return p->closed; }));
    EXPECT_EQ(counters().floods, 1u);
    EXPECT_EQ(counters().messages_in, 6u);
    EXPECT_TRUE(logged("flood: more than 5 messages per second (max rate)")) << log.str();
}

TEST_F(server_test, slow_consumer_is_disconnected_when_its_queue_is_full) {
    auto o = options();
    o.client_buffer = 4096;
    o.backpressure = 0ms;
    make(o);
    auto slow = connect("mem:slow");
    auto fast = connect("mem:fast");
    slow->set_write_capacity(0);
    settle();
    for (int i = 0; i < 10; ++i) {
        srv->broadcast(std::string(1000, 'x'));
        settle();  // the fast one keeps up
    }
    ASSERT_TRUE(run_until([&] { return slow->closed && fast->written.size() == 10 * 1010; }))
        << slow->closed << " " << fast->written.size() << log.str();
    EXPECT_EQ(counters().slow_disconnects, 1u);
    EXPECT_TRUE(logged("client mem:slow disconnected: slow consumer: ")) << log.str();
    EXPECT_TRUE(logged("(client buffer); policy disconnect")) << log.str();
    EXPECT_FALSE(fast->closed);
}

TEST_F(server_test, slow_consumer_drops_oldest_frames_and_catches_up) {
    auto o = options();
    o.client_buffer = 4096;
    o.backpressure = 0ms;
    o.slow_consumer = slow_consumer_policy::drop_oldest;
    make(o);
    auto slow = connect("mem:slow");
    slow->set_write_capacity(0);
    settle();
    for (int i = 0; i < 10; ++i) srv->broadcast(std::to_string(i) + std::string(999, 'x'));
    EXPECT_FALSE(slow->closed);
    EXPECT_EQ(counters().slow_dropped_frames, 6u);
    EXPECT_EQ(srv->queued_bytes_total(), 4u * 1010);
    slow->set_write_capacity(1 << 20);
    ASSERT_TRUE(run_until([&] { return slow->written.size() == 4 * 1010; }));
    EXPECT_EQ(slow->written.substr(10, 1), "6");  // the newest four survived
    EXPECT_TRUE(logged("caught up after slow-consumer drops: 6 frames")) << log.str();
    EXPECT_EQ(srv->queued_bytes_total(), 0u);
}

// A transport that takes everything and keeps what the socket refuses (TLS) must still send
// the last of it with nothing more queued: the writer stopping on an empty queue left a TLS
// subscriber's last bytes waiting for the next delivery.
// A subscriber whose transport took a 1010-byte frame but sent only 100 bytes of it (TLS
// with a full socket): 910 bytes held inside, nothing left queued.
pipe_ptr tls_like_subscriber_holding_bytes(server_test& t) {
    t.make(server_test::options());
    auto sub = t.connect("mem:tls-like");
    sub->hold_output = true;
    sub->set_write_capacity(100);
    t.settle();
    t.srv->broadcast(std::string(1000, 'x'));
    t.settle();
    return sub;
}

TEST_F(server_test, bytes_held_inside_the_transport_are_sent_without_another_delivery) {
    auto sub = tls_like_subscriber_holding_bytes(*this);
    ASSERT_EQ(sub->written.size(), 100u);
    ASSERT_EQ(sub->held.size(), 910u);
    sub->set_write_capacity(1 << 20);  // the socket drains; nothing else happens
    ASSERT_TRUE(run_until([&] { return sub->written.size() == 1010; }, 1000ms))
        << sub->written.size() << " written, " << sub->held.size() << " still held";
    EXPECT_TRUE(sub->held.empty());
    EXPECT_FALSE(sub->closed);
}

// Draining (shutdown): the end of stream goes after the held bytes, and the close only after
// both; closing at once lost the held tail (and TLS's close_notify).
TEST_F(server_test, a_drain_sends_held_bytes_then_the_end_of_stream_then_closes) {
    auto sub = tls_like_subscriber_holding_bytes(*this);
    ASSERT_EQ(sub->held.size(), 910u);
    bool done = false;
    srv->shutdown(5000ms, [&] { done = true; });
    settle();
    EXPECT_FALSE(sub->closed) << "closed with " << sub->held.size() << " bytes held";
    EXPECT_FALSE(sub->send_shut);
    sub->set_write_capacity(1 << 20);
    ASSERT_TRUE(run_until([&] { return sub->closed; }, 2000ms));
    EXPECT_EQ(sub->written.size(), 1010u);
    EXPECT_TRUE(sub->send_shut);
    EXPECT_TRUE(run_until([&] { return done; }, 1000ms));
}

TEST_F(server_test, a_congested_client_holds_a_publisher_back_until_the_backpressure_time) {
    auto o = options();
    o.publish = true;
    o.client_buffer = 8192;
    o.backpressure = 100ms;
    make(o);
    auto sub = connect("mem:sub");
    auto pub = connect("mem:pub");
    sub->set_write_capacity(0);
    pub->read_chunk = 600;
    std::string input;
    for (int i = 0; i < 100; ++i) input += frame(std::string(500, 'p'));
    pub->feed(input);
    ASSERT_TRUE(run_until([&] { return counters().backpressure_waits >= 1; }));
    const auto held_at = std::chrono::steady_clock::now();
    settle();
    EXPECT_FALSE(pub->inbound.empty());  // the publisher is not read while held back
    EXPECT_FALSE(srv->congested());      // the sources are not: they did not fill the queue
    ASSERT_TRUE(run_until([&] { return counters().backpressure_timeouts == 1; }));
    EXPECT_GE(std::chrono::steady_clock::now() - held_at, 90ms);
    ASSERT_TRUE(run_until([&] { return pub->inbound.empty(); }));
    EXPECT_TRUE(sub->closed);  // then it is the slow-consumer policy's
    EXPECT_TRUE(logged("client mem:sub: queue over half of the client buffer for 100 ms; no "
                       "longer holding back the sources for it (backpressure)")) << log.str();
}

TEST_F(server_test, a_queue_filled_by_the_sources_holds_the_sources) {
    auto o = options();
    o.client_buffer = 8192;
    o.backpressure = 100ms;
    make(o);
    auto sub = connect("mem:sub");
    sub->set_write_capacity(0);
    settle();
    for (int i = 0; i < 10 && !srv->congested(); ++i) srv->broadcast(std::string(500, 's'));
    ASSERT_TRUE(srv->congested());
    bool ready = false;
    srv->when_ready([&] { ready = true; });
    settle();
    EXPECT_FALSE(ready);
    ASSERT_TRUE(run_until([&] { return ready; }));  // after the backpressure time
    EXPECT_EQ(counters().backpressure_timeouts, 1u);
}

TEST_F(server_test, only_the_publisher_that_fills_the_queue_is_held) {
    auto o = options();
    o.publish = true;
    o.client_buffer = 8192;
    o.backpressure = 10s;  // the hold outlasts the test
    make(o);
    auto sub = connect("mem:sub");
    auto flooder = connect("mem:flooder");
    auto honest = connect("mem:honest");
    sub->set_write_capacity(0);
    flooder->read_chunk = 600;
    std::string input;
    for (int i = 0; i < 100; ++i) input += frame(std::string(500, 'f'));
    flooder->feed(input);
    ASSERT_TRUE(run_until([&] { return counters().backpressure_waits >= 1; }));
    honest->feed(frame("hello"));
    ASSERT_TRUE(run_until([&] { return honest->inbound.empty(); }));  // read during the hold
    settle();
    EXPECT_FALSE(flooder->inbound.empty());  // while the flooder is not
    EXPECT_EQ(counters().backpressure_timeouts, 0u);
    EXPECT_NE(flooder->written.find("5         hello"), std::string::npos);  // relayed to it
}

TEST_F(server_test, queued_bytes_total_follows_the_queues) {
    make(options());
    auto a = connect("mem:a");
    auto b = connect("mem:b");
    a->set_write_capacity(0);
    b->set_write_capacity(0);
    settle();
    srv->broadcast("hello");
    srv->broadcast("world!");
    EXPECT_EQ(srv->queued_bytes_total(), 2u * (15 + 16));
    b->feed_eof();
    ASSERT_TRUE(run_until([&] { return b->closed; }));
    EXPECT_EQ(srv->queued_bytes_total(), 15u + 16u);
    a->set_write_capacity(1000);
    ASSERT_TRUE(run_until([&] { return srv->queued_bytes_total() == 0; }));
    EXPECT_EQ(a->written, frame("hello") + frame("world!"));
}

// ---------------------------------------------------------------------------------------------
// Chat

namespace {
server_options chat_options() {
    auto o = server_test::options();
    o.chat.enabled = true;
    return o;
}
}  // namespace

TEST_F(server_test, chat_join_relays_pairs_and_replays_history) {
    auto o = chat_options();
    o.chat.history = 1;
    make(o);
    auto alice = connect("mem:alice");
    auto bob = connect("mem:bob");
    alice->feed(join_frame("alice"));
    bob->feed(join_frame("bob"));
    ASSERT_TRUE(run_until([&] { return counters().chat_joins == 2; }));
    alice->feed(frame("one") + frame("two"));
    const std::string pair2 = frame("alice") + frame("two");
    ASSERT_TRUE(run_until([&] { return bob->written.size() == 2 * pair2.size(); }));
    EXPECT_EQ(bob->written, frame("alice") + frame("one") + pair2);
    EXPECT_TRUE(alice->written.empty());  // not echoed to the sender
    auto carol = connect("mem:carol");
    carol->feed(join_frame("carol"));
    ASSERT_TRUE(run_until([&] { return carol->written.size() == pair2.size(); }));
    EXPECT_EQ(carol->written, pair2);  // the last one relay of history
    EXPECT_EQ(counters().messages_broadcast, 2u);
    EXPECT_TRUE(logged("alice joined from mem:alice")) << log.str();
}

TEST_F(server_test, chat_relay_keeps_a_right_aligned_header_as_received) {
    make(chat_options());
    auto alice = connect("mem:alice");
    auto bob = connect("mem:bob");
    alice->feed("         5alice");
    bob->feed(join_frame("bob"));
    ASSERT_TRUE(run_until([&] { return counters().chat_joins == 2; }));
    alice->feed("         2hi");
    ASSERT_TRUE(run_until([&] { return !bob->written.empty(); }));
    EXPECT_EQ(bob->written, "         5alice         2hi");
}

TEST_F(server_test, publish_relays_frames_as_received_without_re_encoding) {
    auto o = options();
    o.publish = true;
    o.welcome.clear();
    make(o);
    auto pub = connect("mem:pub");
    auto sub = connect("mem:sub");
    ASSERT_TRUE(run_until([&] { return counters().clients_current == 2; }));
    // A right-aligned and a zero-padded header: both valid, both repeated byte for byte.
    pub->feed("         2hi0000000003abc");
    ASSERT_TRUE(run_until([&] { return sub->written.size() == 25; }));
    EXPECT_EQ(sub->written, "         2hi0000000003abc");
    EXPECT_EQ(counters().messages_broadcast, 2u);
}

TEST_F(server_test, chat_bad_username_closes_the_client) {
    auto o = chat_options();
    o.chat.max_name = 8;
    make(o);
    auto empty = connect("mem:empty");
    auto longer = connect("mem:long");
    empty->feed(frame(""));
    longer->feed(frame("123456789"));
    ASSERT_TRUE(run_until([&] { return empty->closed && longer->closed; }));
    EXPECT_EQ(counters().chat_names_rejected, 2u);
    EXPECT_EQ(counters().decode_errors, 1u);  // the header announced too long a name
    EXPECT_TRUE(logged("client mem:empty disconnected: bad username: empty")) << log.str();
    EXPECT_TRUE(logged("above the maximum of 8 (max name)")) << log.str();
}

TEST_F(server_test, chat_unique_name_taken_closes_the_newcomer) {
    auto o = chat_options();
    o.chat.unique_names = true;
    make(o);
    auto first = connect("mem:1");
    first->feed(join_frame("alice"));
    ASSERT_TRUE(run_until([&] { return counters().chat_joins == 1; }));
    auto second = connect("mem:2");
    second->feed(join_frame("alice"));
    ASSERT_TRUE(run_until([&] { return second->closed; }));
    EXPECT_FALSE(first->closed);
    EXPECT_EQ(counters().chat_names_rejected, 1u);
    EXPECT_TRUE(logged("client mem:2 disconnected: username 'alice' is already in use "
                       "(unique names)")) << log.str();
    // Once the first leaves, the name is free again.
    first->feed_eof();
    ASSERT_TRUE(run_until([&] { return first->closed; }));
    EXPECT_TRUE(logged("alice left (mem:1): closed by peer")) << log.str();
    auto third = connect("mem:3");
    third->feed(join_frame("alice"));
    ASSERT_TRUE(run_until([&] { return counters().chat_joins == 2; }));
    EXPECT_FALSE(third->closed);
}

TEST_F(server_test, chat_join_timeout_closes_a_silent_client) {
    auto o = chat_options();
    o.idle_timeout = 40ms;
    make(o);
    auto silent = connect("mem:silent");
    ASSERT_TRUE(run_until([&] { return silent->closed; }));
    EXPECT_TRUE(logged("client mem:silent disconnected: join timeout: no username within 40 ms "
                       "(idle timeout)")) << log.str();
    EXPECT_EQ(counters().idle_timeouts, 1u);
}

// ---------------------------------------------------------------------------------------------
// Small pieces

TEST(rate_limiter, allows_a_burst_of_rate_then_refills) {
    rate_limiter r(4);
    const auto t0 = rate_limiter::clock::time_point{} + 1h;
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(r.allow(t0)) << i;
    EXPECT_FALSE(r.allow(t0));
    EXPECT_FALSE(r.allow(t0 + 200ms));  // 0.8 of a token
    EXPECT_TRUE(r.allow(t0 + 260ms));
    EXPECT_FALSE(r.allow(t0 + 260ms));
    EXPECT_TRUE(r.allow(t0 + 10s));  // refilled, but never beyond the burst
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(r.allow(t0 + 10s));
    EXPECT_FALSE(r.allow(t0 + 10s));
}

TEST(rate_limiter, zero_allows_everything) {
    rate_limiter r(0);
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(r.allow(rate_limiter::clock::now()));
}

TEST(relay_unit, builder_counts_the_messages_it_encodes) {
    codec_options codec;
    relay_unit_builder b(codec);
    EXPECT_TRUE(b.empty());
    EXPECT_FALSE(b.take());
    EXPECT_FALSE(b.append("a"));
    EXPECT_FALSE(b.append("bc"));
    b.append_encoded("2         xy", "1         z");  // one message in two frames
    auto unit = b.take();
    EXPECT_EQ(unit.messages, 3u);
    EXPECT_EQ(*unit.bytes, frame("a") + frame("bc") + "2         xy1         z");
    EXPECT_TRUE(b.empty());
}

TEST(relay_unit, adopt_counts_frames_with_the_codec_including_right_aligned_headers) {
    codec_options codec;
    auto bytes = std::make_shared<const std::string>(frame("a") + "         3abc" + frame(""));
    EXPECT_EQ(adopt_frames(bytes, codec).messages, 3u);
    auto pair = std::make_shared<const std::string>(frame("alice") + frame("hi"));
    EXPECT_EQ(adopt_frames(pair, codec, 2).messages, 1u);
}

TEST(close_reason, the_table_decides_counter_and_text) {
    server_counters c;
    count_close(c, close_reason::flood);
    count_close(c, close_reason::bad_username_frame, make_error_code(errc::message_too_large));
    count_close(c, close_reason::closed_by_peer);
    EXPECT_EQ(c.floods, 1u);
    EXPECT_EQ(c.chat_names_rejected, 1u);
    EXPECT_EQ(c.decode_errors, 1u);
    EXPECT_EQ(c.decode_errors_by_kind[static_cast<std::size_t>(errc::message_too_large)], 1u);
    EXPECT_EQ(close_text(close_reason::flood, "x"), "flood: x");
    EXPECT_EQ(close_text(close_reason::closed_by_peer, ""), "closed by peer");
    EXPECT_EQ(rule_of(close_reason::read_failed).level, spdlog::level::info);
}
