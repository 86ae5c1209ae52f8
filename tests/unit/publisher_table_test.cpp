// Publish acks without I/O: the server's publisher table (request parsing, dedup by number,
// FIRST, bounds by count and idle expiry) and the client's resend buffer (numbering, release,
// skipping what the server has, compaction).
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "publisher_table.hpp"
#include "resend_buffer.hpp"

using namespace framecast;
using namespace std::chrono_literals;
using io::publisher_table;

namespace {
const auto t0 = publisher_table::clock::time_point{} + 1h;
}

TEST(PublisherTable, ParsesRequests) {
    publisher_table::request r;
    EXPECT_EQ(publisher_table::parse("@publish n1 pub-A", r), "");
    EXPECT_EQ(r.nonce, "n1");
    EXPECT_EQ(r.publisher, "pub-A");
    EXPECT_EQ(r.first, 1u);
    EXPECT_EQ(publisher_table::parse("@publish n1 p 42", r), "");
    EXPECT_EQ(r.first, 42u);
    for (const char* bad : {"@publish ", "@publish n1", "@publish n1 p 0", "@publish n1 p x",
                            "@publish n! p", "@publish n1 p 1 2", "@publish n1  p",
                            "@publish n1 p 99999999999999999999999"}) {
        EXPECT_NE(publisher_table::parse(bad, r), "") << bad;
    }
    EXPECT_TRUE(publisher_table::is_request("@publish x"));
    EXPECT_FALSE(publisher_table::is_request("@published x"));
}

TEST(PublisherTable, DropsWhatWasAcceptedBefore) {
    publisher_table t({});
    auto* a = t.attach("p", 1, t0);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->last, 0u);
    for (std::uint64_t s = 1; s <= 5; ++s) EXPECT_TRUE(publisher_table::accept(*a, s));
    // A second connection (the first still open) learns 5 and goes on from 6.
    auto* b = t.attach("p", 1, t0);
    EXPECT_EQ(b, a);
    EXPECT_EQ(b->last, 5u);
    EXPECT_TRUE(publisher_table::accept(*b, 6));
    EXPECT_FALSE(publisher_table::accept(*a, 6));  // the old connection's late copy
    EXPECT_TRUE(publisher_table::accept(*a, 7));
    EXPECT_EQ(t.size(), 1u);
}

TEST(PublisherTable, FirstRaisesLast) {
    publisher_table t({});
    auto* a = t.attach("p", 20, t0);
    EXPECT_EQ(a->last, 19u);
    t.detach(*a, t0);
    EXPECT_EQ(t.attach("p", 3, t0)->last, 19u);  // never lowered
}

TEST(PublisherTable, ForgetsIdlePublishersAfterTheExpiry) {
    publisher_table t({.max_publishers = 10, .expiry = 10s});
    auto* a = t.attach("a", 1, t0);
    publisher_table::accept(*a, 1);
    t.detach(*a, t0);
    EXPECT_EQ(t.attach("b", 1, t0 + 9s)->last, 0u);
    EXPECT_EQ(t.size(), 2u);  // a: idle 9 s, kept
    EXPECT_EQ(t.attach("a", 1, t0 + 9s)->last, 1u);
    t.detach(*t.attach("a", 1, t0 + 9s), t0 + 9s);  // still one connection on a
    EXPECT_EQ(t.size(), 2u);
    auto* c = t.attach("c", 1, t0 + 100s);  // a is connected: never expires
    EXPECT_NE(c, nullptr);
    EXPECT_EQ(t.size(), 3u);
    EXPECT_EQ(t.expired(), 0u);
    publisher_table::accept(*c, 1);
    t.detach(*c, t0 + 100s);
    t.attach("d", 1, t0 + 110s);  // c idle 10 s: forgotten
    EXPECT_EQ(t.expired(), 1u);
    EXPECT_EQ(t.size(), 3u);
    EXPECT_EQ(t.attach("c", 1, t0 + 110s)->last, 0u);
}

TEST(PublisherTable, AFullTableForgetsTheLongestIdleOrRefuses) {
    publisher_table t({.max_publishers = 2, .expiry = 1h});
    auto* a = t.attach("a", 1, t0);
    auto* b = t.attach("b", 1, t0);
    EXPECT_EQ(t.attach("c", 1, t0), nullptr);  // both connected
    t.detach(*b, t0 + 1s);
    t.detach(*a, t0 + 2s);
    EXPECT_NE(t.attach("c", 1, t0 + 3s), nullptr);  // b, idle the longest, makes room
    EXPECT_EQ(t.evicted(), 1u);
    EXPECT_EQ(t.size(), 2u);
    // b was forgotten: it starts again from nothing (a, idle, makes room for it).
    auto* again = t.attach("b", 1, t0 + 4s);
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(again->last, 0u);
    EXPECT_EQ(t.evicted(), 2u);
}

TEST(ResendBuffer, NumbersReleasesAndResends) {
    app::resend_buffer b;
    EXPECT_TRUE(b.append("aa"));
    EXPECT_TRUE(b.append("bbb"));
    EXPECT_TRUE(b.append("c"));
    EXPECT_EQ(b.next(), 4u);
    EXPECT_EQ(b.frames_from(2), "bbbc");
    b.release(2);
    EXPECT_EQ(b.first_held(), 3u);
    EXPECT_EQ(b.held_bytes(), 1u);
    b.compact();
    EXPECT_EQ(b.frames_from(3), "c");
    b.release(3);
    EXPECT_EQ(b.held_messages(), 0u);
    EXPECT_EQ(b.first_held(), 4u);
}

TEST(ResendBuffer, SkipsWhatTheServerHas) {
    app::resend_buffer b;
    b.release(2);  // a rerun: the server has 1 and 2
    EXPECT_FALSE(b.append("one"));
    EXPECT_FALSE(b.append("two"));
    EXPECT_TRUE(b.append("three"));
    EXPECT_EQ(b.skipped(), 2u);
    EXPECT_EQ(b.first_held(), 3u);
    EXPECT_EQ(b.frames_from(3), "three");
}
