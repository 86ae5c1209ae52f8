// Permissions from a token's "framecast" claim: NATS semantics, deny wins.
#include "permissions.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

using namespace framecast::io;

TEST(PatternCovers, FollowsNatsWildcards) {
    EXPECT_TRUE(pattern_covers("prices.>", "prices.eu"));
    EXPECT_TRUE(pattern_covers("prices.>", "prices.*"));
    EXPECT_TRUE(pattern_covers("prices.>", "prices.eu.>"));
    EXPECT_TRUE(pattern_covers("prices.>", "prices.>"));
    EXPECT_FALSE(pattern_covers("prices.>", "prices"));     // `>` needs one token more
    EXPECT_TRUE(pattern_covers("prices.*", "prices.eu"));
    EXPECT_TRUE(pattern_covers("prices.*", "prices.*"));
    EXPECT_FALSE(pattern_covers("prices.*", "prices.>"));   // > reaches deeper than *
    EXPECT_FALSE(pattern_covers("prices.*", "prices.eu.x"));
    EXPECT_FALSE(pattern_covers("prices.eu", "prices.*"));  // a literal covers only itself
    EXPECT_TRUE(pattern_covers(">", "anything.at.all"));
    EXPECT_TRUE(pattern_covers("*.eu", "prices.eu"));
    EXPECT_FALSE(pattern_covers("*.eu", "prices.us"));
}

TEST(Permissions, DenyWinsOverAllow) {
    auto p = parse_permissions(R"({"publish": {"allow": ["prices.>"], "deny": ["prices.secret"]},
                                   "subscribe": {"allow": ["prices.*", "news.>"],
                                                 "deny": ["news.internal.>"]}})");
    EXPECT_TRUE(p->may_publish("prices.eu"));
    EXPECT_FALSE(p->may_publish("prices.secret"));
    EXPECT_FALSE(p->may_publish("news.eu"));
    EXPECT_TRUE(p->may_subscribe("prices.eu"));
    EXPECT_TRUE(p->may_subscribe("prices.*"));
    EXPECT_FALSE(p->may_subscribe("prices.>"));          // not covered by prices.*
    EXPECT_TRUE(p->may_subscribe("news.>"));             // overlaps the deny: filtered instead
    EXPECT_FALSE(p->may_subscribe("news.internal.hr"));  // wholly denied
    EXPECT_FALSE(p->may_subscribe("news.internal.>"));
    EXPECT_TRUE(p->may_receive("news.eu"));
    EXPECT_FALSE(p->may_receive("news.internal.hr"));
    EXPECT_TRUE(p->filters_deliveries());
}

TEST(Permissions, MissingListsAllowEverything) {
    auto p = parse_permissions(R"({"subscribe": {"deny": ["secret.>"]}})");
    EXPECT_TRUE(p->may_publish("secret.x"));
    EXPECT_TRUE(p->may_subscribe(">"));
    EXPECT_FALSE(p->may_subscribe("secret.x"));
    auto none = parse_permissions(R"({"publish": {"allow": []}})");
    EXPECT_FALSE(none->may_publish("a"));  // an empty allow list allows nothing
}

TEST(Permissions, MalformedClaimsNameTheProblem) {
    auto message = [](const char* json) {
        try {
            parse_permissions(json);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_EQ(message("[1]"), "the framecast claim is not an object");
    EXPECT_EQ(message(R"({"pub": {}})"),
              "the framecast claim has an unknown key 'pub' (publish, subscribe)");
    EXPECT_EQ(message(R"({"publish": {"allow": "a.>"}})"),
              "framecast.publish.allow is not an array of patterns");
    EXPECT_EQ(message(R"({"subscribe": {"deny": ["a..b"]}})"),
              "framecast.subscribe.deny holds something that is not a pattern: \"a..b\"");
    EXPECT_EQ(message(R"({"subscribe": {"only": []}})"),
              "framecast.subscribe has an unknown key 'only' (allow, deny)");
}
