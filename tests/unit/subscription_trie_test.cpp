// The channel protocol's pure parts: names and patterns, command frames, and the subscription
// trie (wildcards, overlaps delivered once, unsubscribe, limits, the cache kept right), checked
// against pattern_matches, the reference, on a table and on generated cases.
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "channel_protocol.hpp"
#include "subscription_trie.hpp"

using namespace framecast::io;

namespace {

using sub = subscription_trie::subscriber;
sub s(std::uintptr_t n) { return reinterpret_cast<sub>(n * 16); }  // never dereferenced

std::vector<sub> match(subscription_trie& t, std::string_view channel) { return *t.match(channel); }

constexpr std::size_t unlimited = 1'000'000;

channel_error check(std::string_view name, bool pattern, channel_limits l = {}) {
    std::string detail;
    auto e = check_name(name, pattern, l, detail);
    EXPECT_EQ(e == channel_error::none, detail.empty()) << name << ": " << detail;
    return e;
}

}  // namespace

TEST(channel_names, valid_and_invalid) {
    EXPECT_EQ(check("prices.eu", false), channel_error::none);
    EXPECT_EQ(check("a", false), channel_error::none);
    EXPECT_EQ(check("prix.\xc3\xa9t\xc3\xa9", false), channel_error::none);  // UTF-8
    EXPECT_EQ(check("prices.*", true), channel_error::none);
    EXPECT_EQ(check(">", true), channel_error::none);
    EXPECT_EQ(check("*.b.>", true), channel_error::none);
    EXPECT_EQ(check("prices.*", false), channel_error::bad_channel);
    EXPECT_EQ(check("prices.>", false), channel_error::bad_channel);
    EXPECT_EQ(check("a.>.b", true), channel_error::bad_pattern);
    EXPECT_EQ(check("a*.b", true), channel_error::bad_pattern);
    EXPECT_EQ(check("a..b", false), channel_error::bad_channel);
    EXPECT_EQ(check(".a", false), channel_error::bad_channel);
    EXPECT_EQ(check("a.", true), channel_error::bad_pattern);
    EXPECT_EQ(check("", false), channel_error::bad_channel);
    EXPECT_EQ(check("a b", false), channel_error::bad_channel);
    EXPECT_EQ(check("a\tb", false), channel_error::bad_channel);
    EXPECT_EQ(check("a\xff", false), channel_error::bad_channel);
    EXPECT_EQ(check("$sys.ok", false), channel_error::reserved);
    EXPECT_EQ(check("$sys.>", true), channel_error::reserved);
    channel_limits l;
    l.max_name = 5;
    l.max_tokens = 2;
    EXPECT_EQ(check("abcdef", false, l), channel_error::name_too_long);
    EXPECT_EQ(check("a.b.c", false, l), channel_error::too_many_tokens);
    EXPECT_EQ(check("ab.cd", false, l), channel_error::none);
}

TEST(channel_commands, parse) {
    auto c = parse_command("SUB a.*");
    EXPECT_EQ(c.error, channel_error::none);
    EXPECT_EQ(c.what, verb::sub);
    EXPECT_EQ(c.arg, "a.*");
    EXPECT_EQ(parse_command("UNSUB x").what, verb::unsub);
    EXPECT_EQ(parse_command("PUB x").what, verb::pub);
    EXPECT_EQ(parse_command("RESUME").what, verb::resume);  // bare: positions on
    EXPECT_EQ(parse_command("RESUME a.b e 5").arg, "a.b e 5");
    for (std::string_view bad : {"", "SUB", "SUB ", "sub a", "HELLO a", "PUBLISH a", " SUB a"}) {
        auto b = parse_command(bad);
        EXPECT_EQ(b.error, channel_error::bad_command) << bad;
        EXPECT_FALSE(b.detail.empty());
    }
    // The argument is taken whole; check_name then refuses a second space.
    EXPECT_EQ(parse_command("SUB a b").arg, "a b");
}

TEST(pattern_matches, nats_semantics) {
    struct row { const char* pattern; const char* channel; bool match; };
    const row rows[] = {
        {"a", "a", true},          {"a", "b", false},         {"a", "a.b", false},
        {"a.b", "a", false},       {"*", "a", true},          {"*", "a.b", false},
        {"a.*", "a.b", true},      {"a.*", "a", false},       {"a.*", "a.b.c", false},
        {"a.>", "a.b", true},      {"a.>", "a.b.c", true},    {"a.>", "a", false},
        {">", "a", true},          {">", "a.b.c", true},      {"*.b", "a.b", true},
        {"*.b", "a.c", false},     {"*.*.c", "a.b.c", true},  {"a.*.>", "a.b", false},
        {"a.*.>", "a.b.c", true},  {"ab", "a", false},        {"a", "ab", false},
    };
    for (const auto& r : rows) {
        EXPECT_EQ(pattern_matches(r.pattern, r.channel), r.match) << r.pattern << " " << r.channel;
    }
}

TEST(subscription_trie, wildcards_and_overlaps_deliver_once) {
    subscription_trie t;
    EXPECT_EQ(t.add("prices.eu", s(1), unlimited), subscription_trie::add_result::added);
    EXPECT_EQ(t.add("prices.*", s(2), unlimited), subscription_trie::add_result::added);
    EXPECT_EQ(t.add("prices.>", s(3), unlimited), subscription_trie::add_result::added);
    EXPECT_EQ(t.add(">", s(4), unlimited), subscription_trie::add_result::added);
    // Subscriber 5 holds three overlapping patterns: one delivery.
    t.add("prices.*", s(5), unlimited);
    t.add("prices.>", s(5), unlimited);
    t.add("*.eu", s(5), unlimited);
    EXPECT_EQ(t.add("*.eu", s(5), unlimited), subscription_trie::add_result::duplicate);
    EXPECT_EQ(match(t, "prices.eu"), (std::vector<sub>{s(1), s(2), s(3), s(4), s(5)}));
    EXPECT_EQ(match(t, "prices.us"), (std::vector<sub>{s(2), s(3), s(4), s(5)}));
    EXPECT_EQ(match(t, "prices.eu.close"), (std::vector<sub>{s(3), s(4), s(5)}));
    EXPECT_EQ(match(t, "prices"), (std::vector<sub>{s(4)}));
    EXPECT_EQ(match(t, "news.eu"), (std::vector<sub>{s(4), s(5)}));
    EXPECT_EQ(t.subscriptions(), 7u);
    EXPECT_EQ(t.patterns(), 5u);  // prices.eu, prices.*, prices.>, >, *.eu
}

TEST(subscription_trie, unsubscribe_updates_cached_results_and_prunes) {
    subscription_trie t;
    t.add("a.*", s(1), unlimited);
    t.add("a.b", s(2), unlimited);
    EXPECT_EQ(match(t, "a.b"), (std::vector<sub>{s(1), s(2)}));
    EXPECT_EQ(t.cached(), 1u);
    EXPECT_FALSE(t.remove("a.b", s(1)));  // not held by 1
    EXPECT_TRUE(t.remove("a.*", s(1)));
    EXPECT_EQ(match(t, "a.b"), (std::vector<sub>{s(2)}));
    EXPECT_TRUE(t.remove("a.b", s(2)));
    EXPECT_TRUE(match(t, "a.b").empty());
    EXPECT_EQ(t.patterns(), 0u);
    EXPECT_EQ(t.subscriptions(), 0u);
    // A new subscription reaches a channel already cached.
    t.add("a.>", s(3), unlimited);
    EXPECT_EQ(match(t, "a.b"), (std::vector<sub>{s(3)}));
    t.add("a.b", s(4), unlimited);
    EXPECT_EQ(match(t, "a.b"), (std::vector<sub>{s(3), s(4)}));
}

TEST(subscription_trie, a_list_being_delivered_survives_changes) {
    subscription_trie t;
    t.add("x", s(1), unlimited);
    auto held = t.match("x");
    t.remove("x", s(1));
    EXPECT_EQ(*held, (std::vector<sub>{s(1)}));
    EXPECT_TRUE(t.match("x")->empty());
}

TEST(subscription_trie, max_patterns_counts_distinct_patterns_and_leaves_nothing_behind) {
    subscription_trie t;
    EXPECT_EQ(t.add("a.b", s(1), 2), subscription_trie::add_result::added);
    EXPECT_EQ(t.add("a.b", s(2), 2), subscription_trie::add_result::added);  // same pattern
    EXPECT_EQ(t.add("c.*", s(1), 2), subscription_trie::add_result::added);
    EXPECT_EQ(t.add("d.e.f", s(1), 2), subscription_trie::add_result::too_many_patterns);
    EXPECT_TRUE(match(t, "d.e.f").empty());
    EXPECT_FALSE(t.remove("d.e.f", s(1)));
    t.remove("c.*", s(1));
    EXPECT_EQ(t.add("d.e.f", s(1), 2), subscription_trie::add_result::added);
}

// Generated subscriptions and channels: the trie agrees with the reference for every channel,
// through subscribes and unsubscribes in any order, with the cache on.
TEST(subscription_trie, agrees_with_the_reference) {
    std::mt19937 rng(16);
    const char* tokens[] = {"a", "b", "c", "*", ">"};
    auto name = [&](bool pattern) {
        std::string n;
        const int len = 1 + static_cast<int>(rng() % 4);
        for (int i = 0; i < len; ++i) {
            if (i) n += '.';
            int k = static_cast<int>(rng() % (pattern ? 5 : 3));
            if (k == 4 && i + 1 < len) k = 3;  // '>' only last
            n += tokens[k];
        }
        return n;
    };
    subscription_trie t(8);  // a small cache: it overflows and starts over too
    std::vector<std::pair<std::string, sub>> held;
    for (int step = 0; step < 3000; ++step) {
        if (held.empty() || rng() % 3 != 0) {
            auto p = name(true);
            auto who = s(1 + rng() % 6);
            const bool dup = std::find(held.begin(), held.end(), std::pair{p, who}) != held.end();
            auto r = t.add(p, who, unlimited);
            EXPECT_EQ(r, dup ? subscription_trie::add_result::duplicate
                             : subscription_trie::add_result::added);
            if (!dup) held.emplace_back(p, who);
        } else {
            auto i = rng() % held.size();
            EXPECT_TRUE(t.remove(held[i].first, held[i].second));
            held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
        }
        const auto channel = name(false);
        std::vector<sub> want;
        for (const auto& [p, who] : held) {
            if (pattern_matches(p, channel)) want.push_back(who);
        }
        std::sort(want.begin(), want.end());
        want.erase(std::unique(want.begin(), want.end()), want.end());
        ASSERT_EQ(match(t, channel), want) << "step " << step << " channel " << channel;
    }
    EXPECT_EQ(t.subscriptions(), held.size());
}
