// Channels mode in a real server over the in-memory transport: deliveries as (channel, payload)
// pairs, one per matching client however many of its patterns match, no echo to the publisher,
// notices for every refused command with the connection kept, limits, and leaving.
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "decode_helpers.hpp"
#include "framecast/io/server.hpp"
#include "memory_harness.hpp"
#include "transport/memory.hpp"

using namespace framecast;
using namespace framecast::io;
using namespace std::chrono_literals;

namespace {

using test::pair_list;
using test::pairs_of;

using test::frame;
std::string sub_frame(std::string_view p) { return frame("SUB " + std::string(p)); }
std::string pub(std::string_view c, std::string_view m) {
    return frame("PUB " + std::string(c)) + frame(m);
}

std::size_t count_pairs(const std::string& bytes) { return pairs_of(bytes).size(); }

struct channel_test : ::testing::Test, framecast::io::test_support::memory_harness {

    channel_test() {
        spdlog::set_default_logger(std::make_shared<spdlog::logger>(
            "quiet", std::make_shared<spdlog::sinks::null_sink_st>()));
    }
    void make(channel_limits limits = {}) {
        server_options o;
        o.welcome.clear();
        o.idle_timeout = 0ms;
        o.channels.enabled = true;
        o.channels.limits = limits;
        srv = std::make_unique<server>(io, std::move(o));
        srv->start();
    }
    // Sends `bytes` and waits until `p` has received `pairs` pairs in all.
    void send_and_wait(const std::shared_ptr<memory_transport::pipe>& from, const std::string& bytes,
                       const std::shared_ptr<memory_transport::pipe>& to, std::size_t pairs) {
        from->feed(bytes);
        ASSERT_TRUE(run_until([&] { return count_pairs(to->written) >= pairs; }))
            << "got " << count_pairs(to->written) << " of " << pairs;
    }
};

}  // namespace

TEST_F(channel_test, subscribe_publish_wildcards_once_and_no_echo) {
    make();
    auto a = connect("mem:a");
    auto b = connect("mem:b");
    send_and_wait(a, sub_frame("prices.*") + sub_frame("prices.>") + sub_frame("*.eu"), a, 3);
    EXPECT_EQ(pairs_of(a->written), (pair_list{{"$sys.ok", "SUB prices.*"},
                                               {"$sys.ok", "SUB prices.>"},
                                               {"$sys.ok", "SUB *.eu"}}));
    send_and_wait(b, sub_frame("prices.eu"), b, 1);
    send_and_wait(b, pub("prices.eu", "101") + pub("prices.eu.close", "99") + pub("x.y", "no"),
                  a, 5);
    auto got = pairs_of(a->written);
    ASSERT_EQ(got.size(), 5u);
    EXPECT_EQ(got[3], (std::pair<std::string, std::string>{"prices.eu", "101"}));
    EXPECT_EQ(got[4], (std::pair<std::string, std::string>{"prices.eu.close", "99"}));
    // b subscribed to prices.eu but published it: nothing comes back to it.
    EXPECT_EQ(count_pairs(b->written), 1u);
    EXPECT_EQ(srv->counters().deliveries, 2u);
}

TEST_F(channel_test, consecutive_publishes_keep_order_and_frames_as_received) {
    make();
    auto a = connect("mem:a");
    auto b = connect("mem:b");
    send_and_wait(a, sub_frame(">"), a, 1);
    std::string burst;
    for (int i = 0; i < 50; ++i) burst += pub(i % 3 ? "s.one" : "s.two", std::to_string(i));
    send_and_wait(b, burst, a, 51);
    auto got = pairs_of(a->written);
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(got[static_cast<std::size_t>(i) + 1].second, std::to_string(i));
        EXPECT_EQ(got[static_cast<std::size_t>(i) + 1].first, i % 3 ? "s.one" : "s.two");
    }
}

TEST_F(channel_test, bad_commands_get_a_notice_and_the_connection_stays) {
    make();
    auto a = connect("mem:a");
    auto b = connect("mem:b");
    send_and_wait(b, sub_frame("ok"), b, 1);
    // A bad PUB still takes its payload frame: "secret" must not be read as a command.
    a->feed(frame("HELLO") + frame("SUB a..b") + frame("PUB a.*") + frame("secret") +
            frame("PUB $sys.ok") + frame("x") + frame("UNSUB nope") + frame("") + pub("ok", "fine"));
    ASSERT_TRUE(run_until([&] { return count_pairs(b->written) >= 2; }));
    auto got = pairs_of(a->written);
    ASSERT_EQ(got.size(), 6u);
    const char* codes[] = {"bad-command ", "bad-pattern ", "bad-channel ", "reserved ",
                           "not-subscribed ", "bad-command "};
    for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].first, "$sys.error");
        EXPECT_TRUE(got[i].second.starts_with(codes[i])) << got[i].second;
    }
    EXPECT_FALSE(a->closed);
    EXPECT_EQ(pairs_of(b->written).back(), (std::pair<std::string, std::string>{"ok", "fine"}));
    EXPECT_EQ(srv->counters().channel_errors, 6u);
}

TEST_F(channel_test, limits_are_notices) {
    channel_limits l;
    l.max_subscriptions = 2;
    l.max_channels = 3;
    l.max_name = 8;
    l.max_tokens = 2;
    make(l);
    auto a = connect("mem:a");
    auto b = connect("mem:b");
    send_and_wait(a, sub_frame("a") + sub_frame("b") + sub_frame("c") + sub_frame("123456789") + sub_frame("x.y.z"), a, 5);
    auto got = pairs_of(a->written);
    EXPECT_EQ(got[2].second.substr(0, 23), "too-many-subscriptions ");
    EXPECT_EQ(got[3].second.substr(0, 14), "name-too-long ");
    EXPECT_EQ(got[4].second.substr(0, 16), "too-many-tokens ");
    send_and_wait(b, sub_frame("a") + sub_frame("d"), b, 2);  // 'a' exists: not a new pattern
    got = pairs_of(b->written);
    EXPECT_EQ(got[0].first, "$sys.ok");
    EXPECT_EQ(got[1].first, "$sys.ok");
    auto c = connect("mem:c");
    send_and_wait(c, sub_frame("e"), c, 1);  // a fourth distinct pattern
    EXPECT_EQ(pairs_of(c->written)[0].second.substr(0, 18), "too-many-channels ");
    // Unsubscribing makes room again.
    send_and_wait(a, frame("UNSUB b") + sub_frame("c"), a, 7);
    EXPECT_EQ(pairs_of(a->written)[6], (std::pair<std::string, std::string>{"$sys.ok", "SUB c"}));
}

TEST_F(channel_test, unsubscribe_and_leaving_stop_deliveries) {
    make();
    auto a = connect("mem:a");
    auto c = connect("mem:c");
    auto b = connect("mem:b");
    send_and_wait(a, sub_frame("t.*"), a, 1);
    send_and_wait(c, sub_frame("t.>"), c, 1);
    send_and_wait(b, pub("t.1", "one"), a, 2);
    send_and_wait(a, frame("UNSUB t.*"), a, 3);
    c->feed_eof();
    ASSERT_TRUE(run_until([&] { return c->closed; }));
    EXPECT_EQ(srv->counters().channel_unsubscribes, 2u);
    auto d = connect("mem:d");
    send_and_wait(d, sub_frame("t.2"), d, 1);
    send_and_wait(b, pub("t.2", "two"), d, 2);
    EXPECT_EQ(count_pairs(a->written), 3u);  // nothing after its UNSUB
}

TEST_F(channel_test, notices_reach_a_client_that_closes_right_after_its_commands) {
    make();
    auto a = connect("mem:a");
    a->feed(frame("PUB bad..name") + frame("x"));
    a->feed_eof();
    ASSERT_TRUE(run_until([&] { return a->closed; }));
    auto got = pairs_of(a->written);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0].second.starts_with("bad-channel ")) << got[0].second;
}
