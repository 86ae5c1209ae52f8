// The Redis backplane against a real redis-server: every node sees every message once, in one
// order; a Redis outage loses nothing the stream retains and delivers nothing twice; with
// offsets and channels, every channel is numbered densely, the same on every node.
#include <gtest/gtest.h>

#include <framecast/backplane.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"

using namespace framecast;
using namespace std::chrono_literals;

namespace {

// Collects what one node delivers.
struct node {
    std::unique_ptr<backplane::backplane> bp;
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> got;

    node(const std::string& url, backplane::options opts = {}) : bp(backplane::make_backplane(url, opts)) {
        bp->start([this](backplane::message m) {
            std::lock_guard lock(mu);
            got.push_back(*m.framed);
            cv.notify_all();
        });
    }
    bool wait_for(std::size_t n, std::chrono::seconds limit = 20s) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, limit, [&] { return got.size() >= n; });
    }
    // Waits until `m` has arrived, then forgets it (what the test checks excludes it).
    bool wait_and_forget(const std::string& m, std::chrono::seconds limit = 20s) {
        std::unique_lock lock(mu);
        auto it = got.end();
        if (!cv.wait_for(lock, limit, [&] { return (it = std::find(got.begin(), got.end(), m)) != got.end(); })) {
            return false;
        }
        got.erase(it);
        return true;
    }
    std::vector<std::string> snapshot() {
        std::lock_guard lock(mu);
        return got;
    }
};

auto msg(const std::string& s) { return std::make_shared<const std::string>(s); }

// Waits until the node's reader is connected and positioned (a probe message comes back).
void warm_up(std::vector<node*> nodes) {
    nodes[0]->bp->publish(msg("probe"), 0);
    for (auto* n : nodes) ASSERT_TRUE(n->wait_for(1)) << "backplane did not come up";
}

// Polls `condition` until it holds or `limit` passes; false then. The 5 ms pause is the poll
// interval, not a guess at how long anything takes.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 20s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
    return true;
}

// Waits until nothing more can arrive: no node holds anything to append, then a marker
// published after everything else has reached every node (the log has one order, so anything
// before it, a duplicate included, arrived first). The marker is then dropped from what each
// node got, so the checks see only the test's own messages.
void settle(std::vector<node*> nodes) {
    for (auto* n : nodes) {
        ASSERT_TRUE(eventually([n] { return n->bp->snapshot().pending == 0; }))
            << "timed out waiting for a node's pending appends to reach 0 (still "
            << n->bp->snapshot().pending << ")";
    }
    const std::string marker = "end of the test's messages";
    nodes[0]->bp->publish(msg(marker), 0);
    for (auto* n : nodes) {
        ASSERT_TRUE(n->wait_and_forget(marker)) << "timed out waiting for the end marker at a node";
    }
}

}  // namespace

TEST(RedisBackplane, UrlErrorsNameTheProblem) {
    EXPECT_THROW(backplane::make_backplane("http://x/y"), std::invalid_argument);
    EXPECT_THROW(backplane::make_backplane("redis://:99999/k"), std::invalid_argument);
    EXPECT_THROW(backplane::make_backplane("redis://host:abc/k"), std::invalid_argument);
    auto bp = backplane::make_backplane("redis://[::1]:7000/stream");
    EXPECT_EQ(bp->describe(), "redis://[::1]:7000/stream");
    EXPECT_EQ(backplane::make_backplane("redis://h")->describe(), "redis://h:6379/framecast");
}

TEST(RedisBackplane, ThreeNodesSeeEveryMessageInOneOrder) {
    test::redis_server redis;
    node a(redis.url("order")), b(redis.url("order")), c(redis.url("order"));
    warm_up({&a, &b, &c});
    constexpr int per_node = 1000;
    std::thread ta([&] { for (int i = 0; i < per_node; ++i) a.bp->publish(msg("a" + std::to_string(i)), 0); });
    std::thread tb([&] { for (int i = 0; i < per_node; ++i) b.bp->publish(msg("b" + std::to_string(i)), 0); });
    std::thread tc([&] { for (int i = 0; i < per_node; ++i) c.bp->publish(msg("c" + std::to_string(i)), 0); });
    ta.join(); tb.join(); tc.join();
    const std::size_t total = 1 + 3 * per_node;
    for (auto* n : {&a, &b, &c}) ASSERT_TRUE(n->wait_for(total)) << n->snapshot().size();
    ASSERT_NO_FATAL_FAILURE(settle({&a, &b, &c}));  // nothing more may arrive
    auto ga = a.snapshot();
    EXPECT_EQ(ga.size(), total);
    EXPECT_EQ(b.snapshot(), ga);
    EXPECT_EQ(c.snapshot(), ga);
    // Per sender, in publish order, none missing.
    for (char sender : {'a', 'b', 'c'}) {
        int next = 0;
        for (const auto& m : ga) {
            if (m[0] == sender) {
                EXPECT_EQ(m, sender + std::to_string(next++));
            }
        }
        EXPECT_EQ(next, per_node);
    }
}

TEST(RedisBackplane, RedisRestartLosesNothingAndDuplicatesNothing) {
    test::redis_server redis;
    backplane::options opts;
    opts.max_backoff_seconds = 0.5;
    node a(redis.url("restart"), opts), b(redis.url("restart"), opts);
    warm_up({&a, &b});
    constexpr int total = 3000;
    std::atomic<int> published{0};
    std::thread publisher([&] {
        for (int i = 0; i < total; ++i) {
            (i % 2 ? a : b).bp->publish(msg(std::to_string(i)), 0);
            published = i + 1;
            std::this_thread::sleep_for(1ms);  // the publishing pace (not synchronisation)
        }
    });
    // Mid-stream: some messages have gone through Redis to both nodes.
    ASSERT_TRUE(eventually([&] { return a.snapshot().size() > 300 && b.snapshot().size() > 300; }))
        << "timed out waiting for 300 messages at both nodes before stopping Redis";
    redis.stop();
    // Publishing goes on; nodes hold messages: both have noticed, and 500 more were published
    // while Redis was away.
    const int at_stop = published;
    ASSERT_TRUE(eventually([&] {
        return !a.bp->snapshot().connected && !b.bp->snapshot().connected && published >= std::min(total, at_stop + 500);
    })) << "timed out waiting for both nodes to notice Redis is gone and 500 messages published meanwhile";
    EXPECT_FALSE(a.bp->snapshot().connected);
    redis.start();
    publisher.join();
    // What each node's backplane saw, for any failure below (the test has failed under heavy
    // parallel load, never alone: these numbers say which way).
    auto state = [](node& n) {
        const auto s = n.bp->snapshot();
        return "received " + std::to_string(n.snapshot().size()) + ", connected " +
               std::to_string(s.connected) + ", reconnects " + std::to_string(s.reconnects) +
               ", pending " + std::to_string(s.pending) + ", dropped " + std::to_string(s.dropped) +
               ", duplicates skipped " + std::to_string(s.duplicates) + ", sequence jumps " +
               std::to_string(s.sequence_jumps);
    };
    for (auto* n : {&a, &b}) ASSERT_TRUE(n->wait_for(1 + total, 30s)) << state(*n);
    ASSERT_NO_FATAL_FAILURE(settle({&a, &b}));
    for (auto* n : {&a, &b}) {
        auto got = n->snapshot();
        ASSERT_EQ(got.size(), 1u + total) << state(*n);
        std::vector<int> seen(total, 0);
        for (std::size_t i = 1; i < got.size(); ++i) ++seen.at(std::stoul(got[i]));
        for (int i = 0; i < total; ++i) ASSERT_EQ(seen[i], 1) << "message " << i << "; " << state(*n);
        auto s = n->bp->snapshot();
        EXPECT_GE(s.reconnects, 1u);
        EXPECT_TRUE(s.connected);
        EXPECT_EQ(s.dropped, 0u);
    }
    EXPECT_EQ(b.snapshot(), a.snapshot());
}

// A restarted Redis answers LOADING until it has read its append-only file back (the failure
// CI saw under load: every append of that moment was dropped). What a node publishes meanwhile
// is kept and sent again: none dropped, each delivered once, in publish order.
TEST(RedisBackplane, AppendsWaitWhileRedisLoadsItsData) {
    test::redis_server redis;
    backplane::options opts;
    opts.max_backoff_seconds = 0.2;
    node a(redis.url("loading"), opts);
    warm_up({&a});
    // Data that takes a while to load: 20,000 keys, each held 50 us (key-load-delay); Redis
    // answers clients (LOADING) every 1,024 commands it reads back.
    constexpr int during = 100;
    redis.fill(20000);
    redis.stop();
    redis.start({"--key-load-delay", "50"}, /*until_loaded=*/false);
    for (int i = 0; i < during; ++i) a.bp->publish(msg("d" + std::to_string(i)), 0);
    ASSERT_TRUE(a.wait_for(1 + during, 30s))
        << "received " << a.snapshot().size() << ", dropped " << a.bp->snapshot().dropped;
    ASSERT_NO_FATAL_FAILURE(settle({&a}));
    const auto s = a.bp->snapshot();
    EXPECT_GT(s.retried, 0u) << "Redis never answered LOADING: the test did not test it";
    EXPECT_EQ(s.dropped, 0u);
    std::vector<std::string> published_during;
    for (const auto& m : a.snapshot()) {
        if (m[0] == 'd') published_during.push_back(m);
    }
    ASSERT_EQ(published_during.size(), std::size_t{during});
    for (int i = 0; i < during; ++i) EXPECT_EQ(published_during[i], "d" + std::to_string(i));
}

TEST(RedisBackplane, PendingQueueIsBoundedWhileRedisIsAway) {
    test::redis_server redis;
    std::string url = redis.url("bounded");
    redis.stop();
    backplane::options opts;
    opts.pending_limit = 10;
    auto bp = backplane::make_backplane(url, opts);
    bp->start([](backplane::message) {});
    for (int i = 0; i < 25; ++i) bp->publish(msg("x"), 0);
    auto s = bp->snapshot();
    EXPECT_LE(s.pending, 10u);
    EXPECT_GE(s.dropped, 15u);
    bp->stop(0.2);
}

namespace {

// A channels entry as a node builds it: (channel frame, payload frame) pairs, 10-byte headers.
std::string frame(const std::string& s) {
    char h[16];
    std::snprintf(h, sizeof h, "%-10zu", s.size());
    return std::string(h, 10) + s;
}

// Collects the live entries' numbers at one node (with offsets).
struct numbered_node {
    std::unique_ptr<backplane::backplane> bp;
    std::mutex mu;
    std::condition_variable cv;
    struct entry {
        std::string framed;
        std::uint64_t offset, channel_offset;
        bool operator==(const entry&) const = default;
    };
    std::vector<entry> got;
    std::vector<std::pair<std::string, std::uint64_t>> channels;  // kind::channel, at start

    numbered_node(const std::string& url, backplane::options opts)
        : bp(backplane::make_backplane(url, opts)) {
        bp->start([this](backplane::message m) {
            std::lock_guard lock(mu);
            if (m.what == backplane::message::kind::channel) {
                channels.emplace_back(m.channel, m.offset);
            } else if (m.what == backplane::message::kind::live) {
                got.push_back({*m.framed, m.offset, m.channel_offset});
            }
            cv.notify_all();
        });
    }
    bool wait_for(std::size_t n) {
        std::unique_lock lock(mu);
        return cv.wait_for(lock, 20s, [&] { return got.size() >= n; });
    }
    std::vector<entry> snapshot() {
        std::lock_guard lock(mu);
        return got;
    }
};

backplane::options channel_options() {
    backplane::options o;
    o.offsets = true;
    o.channel_header = 10;
    return o;
}

}  // namespace

TEST(RedisBackplane, EveryChannelIsNumberedDenselyTheSameOnEveryNode) {
    test::redis_server redis;
    numbered_node a(redis.url("chan"), channel_options()), b(redis.url("chan"), channel_options());
    constexpr int per_node = 300;
    auto publish = [](numbered_node& n, const std::string& who) {
        for (int i = 0; i < per_node; ++i) {
            const std::string channel = i % 3 == 0 ? "x" : "y";
            // Some entries hold two messages of their channel: they take two offsets.
            std::string f = frame(channel) + frame(who + std::to_string(i));
            std::size_t messages = 1;
            if (i % 5 == 0) {
                f += frame(channel) + frame(who + std::to_string(i) + "b");
                messages = 2;
            }
            n.bp->publish(std::make_shared<const std::string>(f), 0, messages);
        }
    };
    std::thread ta([&] { publish(a, "a"); });
    std::thread tb([&] { publish(b, "b"); });
    ta.join();
    tb.join();
    ASSERT_TRUE(a.wait_for(2 * per_node));
    ASSERT_TRUE(b.wait_for(2 * per_node));
    const auto ga = a.snapshot();
    ASSERT_EQ(ga.size(), 2u * per_node);
    EXPECT_EQ(b.snapshot(), ga);  // the same numbers on both nodes
    std::uint64_t offset = 1, x = 1, y = 1;
    for (const auto& e : ga) {
        const std::size_t messages = e.framed.size() > 40 ? 2 : 1;
        EXPECT_EQ(e.offset, offset);
        auto& next = e.framed.substr(10, 1) == "x" ? x : y;
        EXPECT_EQ(e.channel_offset, next) << e.framed;
        next += messages;
        offset += messages;
    }
    EXPECT_EQ(x + y - 2 + 0u, offset - 1);  // every message numbered in exactly one channel

    // A node started now learns every channel's last offset (and the floor) with the history.
    numbered_node c(redis.url("chan"), channel_options());
    std::vector<std::pair<std::string, std::uint64_t>> want{{"", 0}, {"x", x - 1}, {"y", y - 1}};
    std::lock_guard lock(c.mu);
    auto have = c.channels;
    std::sort(have.begin(), have.end());
    EXPECT_EQ(have, want);
}

TEST(RedisBackplane, AnEntryWithoutAChannelOffsetIsRefused) {
    test::redis_server redis;
    numbered_node a(redis.url("forged"), channel_options());
    a.bp->publish(std::make_shared<const std::string>(frame("x") + frame("1")), 0, 1);
    ASSERT_TRUE(a.wait_for(1));
    // Numbered and of the stream's epoch (read from the first entry), but not per channel.
    const auto groups = redis.command({"XINFO", "GROUPS", "forged"});
    const auto at = groups.find("framecast-epoch-");
    ASSERT_NE(at, std::string::npos) << groups;
    const std::string epoch = groups.substr(at + 16, groups.find('\n', at) - at - 16);
    redis.command({"XADD", "forged", "0-*", "e", epoch, "n", "x", "f", frame("x") + frame("evil")});
    // And one whose channel offset passes its stream offset (a channel never can).
    redis.command({"XADD", "forged", "0-*", "e", epoch, "n", "x", "k", "999", "f",
                   frame("x") + frame("evil2")});
    a.bp->publish(std::make_shared<const std::string>(frame("x") + frame("2")), 0, 1);
    ASSERT_TRUE(a.wait_for(2));
    const auto got = a.snapshot();
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[1].framed, frame("x") + frame("2"));
    EXPECT_EQ(got[1].channel_offset, 2u);
    EXPECT_EQ(a.bp->snapshot().rejected, 2u);
}

TEST(RedisBackplane, AForgottenChannelStartsAboveEveryOffsetItHad) {
    test::redis_server redis;
    auto opts = channel_options();
    opts.max_channels = 1;
    numbered_node a(redis.url("forget"), opts);
    auto pub = [&](const std::string& channel, std::size_t n) {
        std::string f;
        for (std::size_t i = 0; i < n; ++i) f += frame(channel) + frame("m");
        a.bp->publish(std::make_shared<const std::string>(f), 0, n);
    };
    pub("x", 3);  // x 1..3
    pub("y", 5);  // y 1..5; x forgotten: floor 3
    pub("x", 1);  // x again, above 3; y forgotten: floor 5
    pub("y", 1);  // y above 5 (and 4, x's last)
    ASSERT_TRUE(a.wait_for(4));
    const auto got = a.snapshot();
    EXPECT_EQ(got[0].channel_offset, 1u);
    EXPECT_EQ(got[1].channel_offset, 1u);
    EXPECT_EQ(got[2].channel_offset, 4u);
    EXPECT_EQ(got[3].channel_offset, 6u);
}
