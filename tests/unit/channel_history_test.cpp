// The per-channel resume history on its own: offsets per channel, each channel's window, the
// process-wide bound on messages and bytes (the oldest unit of all goes first), reads of pairs
// from inside a unit, and idle channels forgotten without ever reusing an offset.
#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "channel_history.hpp"
#include "memory_budget.hpp"

using namespace framecast;
using namespace framecast::io;

namespace {

// A channels unit: (channel, payload) pairs, all for one channel.
relay_unit pairs(const std::string& channel, const std::vector<std::string>& payloads) {
    auto bytes = std::make_shared<std::string>();
    for (const auto& p : payloads) {
        EXPECT_FALSE(append_frame(*bytes, channel, codec_options{}));
        EXPECT_FALSE(append_frame(*bytes, p, codec_options{}));
    }
    return {shared_frame(std::move(bytes)), payloads.size()};
}

// The payloads of the pairs in `bytes`, checking each pair's channel.
std::vector<std::string> payloads_of(const std::string& bytes, const std::string& channel) {
    decoder dec;
    std::span<const char> in(bytes.data(), bytes.size());
    std::vector<std::string> out;
    while (dec.next(in) == decode_event::frame) {
        EXPECT_EQ(dec.payload(), channel);
        EXPECT_EQ(dec.next(in), decode_event::frame);
        out.emplace_back(dec.payload());
    }
    return out;
}

std::vector<std::string> read_all(const channel_history& h, const std::string& channel,
                                  std::uint64_t from, std::uint64_t& first) {
    std::string out;
    h.read(channel, from, 1 << 20, out, first);
    return payloads_of(out, channel);
}

}  // namespace

TEST(ChannelHistory, EveryChannelHasItsOwnOffsets) {
    channel_history h({}, codec_options{});
    EXPECT_EQ(h.next("a"), 1u);
    EXPECT_EQ(h.append("a", pairs("a", {"a1", "a2"})), 1u);
    EXPECT_EQ(h.append("b", pairs("b", {"b1"})), 1u);
    EXPECT_EQ(h.append("a", pairs("a", {"a3"})), 3u);
    EXPECT_EQ(h.next("a"), 4u);
    EXPECT_EQ(h.next("b"), 2u);
    EXPECT_EQ(h.messages(), 4u);
    EXPECT_EQ(h.channels(), 2u);
    std::uint64_t first = 0;
    // From inside a unit: pairs are skipped whole.
    EXPECT_EQ(read_all(h, "a", 2, first), (std::vector<std::string>{"a2", "a3"}));
    EXPECT_EQ(first, 2u);
    EXPECT_EQ(read_all(h, "b", 1, first), (std::vector<std::string>{"b1"}));
    EXPECT_TRUE(read_all(h, "c", 1, first).empty());
    EXPECT_EQ(first, 0u);
}

TEST(ChannelHistory, EachChannelKeepsItsWindow) {
    channel_history h({.window = 3}, codec_options{});
    for (int i = 1; i <= 10; ++i) h.append("a", pairs("a", {"a" + std::to_string(i)}));
    h.append("b", pairs("b", {"b1"}));
    EXPECT_EQ(h.oldest("a"), 8u);
    EXPECT_EQ(h.oldest("b"), 1u);
    EXPECT_EQ(h.messages(), 4u);
    std::uint64_t first = 0;
    EXPECT_EQ(read_all(h, "a", 2, first), (std::vector<std::string>{"a8", "a9", "a10"}));
    EXPECT_EQ(first, 8u);  // older than the window: from the oldest held
}

TEST(ChannelHistory, TheTotalBoundDropsTheOldestOfAllChannels) {
    channel_history h({.window = 100, .total_messages = 4}, codec_options{});
    h.append("a", pairs("a", {"a1"}));
    h.append("b", pairs("b", {"b1"}));
    h.append("a", pairs("a", {"a2"}));
    h.append("b", pairs("b", {"b2"}));
    EXPECT_EQ(h.messages(), 4u);
    h.append("c", pairs("c", {"c1"}));  // a1 is the oldest of all
    EXPECT_EQ(h.messages(), 4u);
    EXPECT_EQ(h.oldest("a"), 2u);
    EXPECT_EQ(h.oldest("b"), 1u);
    h.append("c", pairs("c", {"c2", "c3"}));  // b1, a2 next
    EXPECT_EQ(h.messages(), 4u);
    EXPECT_EQ(h.oldest("a"), h.next("a"));  // empty, still numbered on
    EXPECT_EQ(h.next("a"), 3u);
    EXPECT_EQ(h.oldest("b"), 2u);
}

TEST(ChannelHistory, TheTotalBoundCountsBytesAndKeepsTheNewest) {
    const std::string big(1000, 'x');
    channel_history h({.total_bytes = 2500}, codec_options{});
    for (int i = 0; i < 20; ++i) h.append("ch" + std::to_string(i), pairs("ch", {big}));
    EXPECT_LE(h.bytes(), 2500u);
    EXPECT_EQ(h.messages(), 2u);
    h.append("huge", pairs("huge", {std::string(5000, 'y')}));
    EXPECT_EQ(h.messages(), 1u);  // over the bound alone: the newest unit stays
}

TEST(ChannelHistory, ManyChannelsStayBounded) {
    memory_budget budget(1u << 30);
    {
        channel_history h({.total_messages = 1000, .idle_channels = 500}, codec_options{}, &budget);
        for (int i = 0; i < 100'000; ++i) {
            const auto ch = "c" + std::to_string(i);
            h.append(ch, pairs(ch, {"m"}));
        }
        EXPECT_EQ(h.messages(), 1000u);
        EXPECT_LE(h.channels(), 2000u);  // idle channels forgotten, in batches
        EXPECT_EQ(budget.outbound(), 1000 * memory_budget::entry_cost);
    }
    EXPECT_EQ(budget.outbound(), 0u);
}

TEST(ChannelHistory, AForgottenChannelNeverReusesAnOffset) {
    channel_history h({.total_messages = 2, .idle_channels = 2}, codec_options{});
    for (int i = 0; i < 5; ++i) h.append("a", pairs("a", {"a"}));  // a: 1..5
    h.append("b", pairs("b", {"b"}));
    h.append("c", pairs("c", {"c"}));  // a's history is gone; the table is full
    h.append("d", pairs("d", {"d"}));
    const auto known = h.channels();
    h.append("e", pairs("e", {"e"}));  // a, b, c are idle: forgotten
    EXPECT_LT(h.channels(), known + 1);
    const auto next = h.next("a");
    EXPECT_GT(next, 5u);
    EXPECT_EQ(h.append("a", pairs("a", {"again"})), next);
}

// The process-wide sequence (RESUME *): one number per message over all channels.
TEST(ChannelHistory, EveryMessageHasAProcessWideSequence) {
    channel_history h({}, codec_options{});
    EXPECT_EQ(h.sequence(), 0u);
    h.append("a", pairs("a", {"a1", "a2"}));  // 1, 2
    h.append("b", pairs("b", {"b1"}));        // 3
    h.append("a", pairs("a", {"a3", "a4"}));  // 4, 5
    EXPECT_EQ(h.sequence(), 5u);
    // Where a channel's messages after a sequence start, from inside a unit too.
    EXPECT_EQ(h.since("a", 0).from, 1u);
    EXPECT_EQ(h.since("a", 1).from, 2u);
    EXPECT_EQ(h.since("a", 2).from, 3u);
    EXPECT_EQ(h.since("a", 3).from, 3u);
    EXPECT_EQ(h.since("a", 4).from, 4u);
    EXPECT_EQ(h.since("a", 5).from, h.next("a"));  // nothing after: the next one
    EXPECT_EQ(h.since("b", 3).from, h.next("b"));
    EXPECT_EQ(h.since("a", 1).lost, 0u);
    EXPECT_EQ(h.since("z", 0).from, 1u);  // unknown: where it would start
    std::vector<std::string> after;
    h.channels_after(3, [&](std::string_view c) { after.emplace_back(c); });
    EXPECT_EQ(after, std::vector<std::string>{"a"});
    after.clear();
    h.channels_after(2, [&](std::string_view c) { after.emplace_back(c); });
    std::sort(after.begin(), after.end());
    EXPECT_EQ(after, (std::vector<std::string>{"a", "b"}));
}

TEST(ChannelHistory, MessagesAfterASequenceThatLeftTheWindowAreCounted) {
    channel_history h({.window = 3}, codec_options{});
    h.append("old", pairs("old", {"o1"}));  // sequence 1
    for (int i = 1; i <= 5; ++i) h.append("new", pairs("new", {"n" + std::to_string(i)}));
    // new was created after sequence 1: its 2 dropped messages are exactly what is lost.
    auto s = h.since("new", 1);
    EXPECT_EQ(s.from, 3u);
    EXPECT_EQ(s.lost, 2u);
    EXPECT_FALSE(s.lost_at_most);
    // A position inside what was dropped: some of the dropped were before it (at most).
    s = h.since("new", 2);
    EXPECT_EQ(s.from, 3u);
    EXPECT_EQ(s.lost, 2u);
    EXPECT_TRUE(s.lost_at_most);
    // After everything dropped: nothing lost.
    s = h.since("new", 3);
    EXPECT_EQ(s.from, 3u);
    EXPECT_EQ(s.lost, 0u);
    // The process-wide bound drops units too: the sequences follow.
    channel_history t({.window = 100, .total_messages = 2}, codec_options{});
    t.append("a", pairs("a", {"a1"}));  // 1
    t.append("b", pairs("b", {"b1"}));  // 2
    t.append("b", pairs("b", {"b2"}));  // 3: a1 goes
    s = t.since("a", 0);
    EXPECT_EQ(s.from, t.next("a"));
    EXPECT_EQ(s.lost, 1u);
    EXPECT_EQ(t.since("b", 0).lost, 0u);
}

TEST(ChannelHistory, AForgottenChannelsSequenceIsKept) {
    channel_history h({.total_messages = 2, .idle_channels = 2}, codec_options{});
    EXPECT_EQ(h.forgotten_sequence(), 0u);
    h.append("a", pairs("a", {"a1", "a2"}));  // 1, 2
    h.append("b", pairs("b", {"b"}));         // 3
    h.append("c", pairs("c", {"c"}));         // 4: a is empty
    h.append("d", pairs("d", {"d"}));         // 5: a, b empty; forgotten at the next new one
    h.append("e", pairs("e", {"e"}));
    EXPECT_FALSE(h.contains("a"));
    EXPECT_GE(h.forgotten_sequence(), 2u);  // a client older than this may have missed a
}

// With a shared log (serve --channels --resume --backplane) the log numbers: its offsets and
// sequences are taken as given, repeats and numbers that go back are refused, and a channel the
// log numbered again above a hole starts its history there.
TEST(ChannelHistory, ASharedLogsNumbersAreTakenAsGiven) {
    channel_history h({}, codec_options{});
    h.restart(101);  // the log's history starts at sequence 101
    EXPECT_EQ(h.sequence(), 100u);
    EXPECT_EQ(h.forgotten_sequence(), 100u);  // channels before it are not held
    EXPECT_EQ(h.next("a"), 101u);             // a channel not held: its offsets are below
    EXPECT_TRUE(h.append_at("a", 7, 101, pairs("a", {"a7", "a8"})));  // sequences 101, 102
    EXPECT_TRUE(h.append_at("b", 1, 103, pairs("b", {"b1"})));
    EXPECT_EQ(h.next("a"), 9u);
    EXPECT_EQ(h.oldest("a"), 7u);
    EXPECT_EQ(h.sequence(), 103u);
    // A repeat (a sequence passed): refused, not kept.
    EXPECT_FALSE(h.append_at("a", 9, 103, pairs("a", {"dup"})));
    EXPECT_EQ(h.messages(), 3u);
    // A hole in the log's sequence (an entry refused here) is skipped.
    EXPECT_TRUE(h.append_at("a", 9, 110, pairs("a", {"a9"})));
    EXPECT_EQ(h.sequence(), 110u);
    EXPECT_EQ(h.since("a", 105).from, 9u);
    std::uint64_t first = 0;
    EXPECT_EQ(read_all(h, "a", 7, first), (std::vector<std::string>{"a7", "a8", "a9"}));
    // A channel the log forgot and numbers again above its old offsets: its history restarts,
    // and a read from before the hole starts after it.
    EXPECT_TRUE(h.append_at("a", 20, 111, pairs("a", {"a20"})));
    EXPECT_EQ(h.oldest("a"), 20u);
    EXPECT_EQ(h.messages(), 2u);  // b1, a20
    EXPECT_EQ(read_all(h, "a", 8, first), (std::vector<std::string>{"a20"}));
    EXPECT_EQ(first, 20u);
    EXPECT_GT(h.since("a", 100).lost, 0u);  // the messages that went with the restart
    // A new epoch: nothing is held.
    // Numbers that go back (a forged entry had gone first): the log's win, the channel
    // starts again there.
    EXPECT_TRUE(h.append_at("a", 5, 112, pairs("a", {"a5"})));
    EXPECT_EQ(h.oldest("a"), 5u);
    EXPECT_EQ(h.next("a"), 6u);
    h.restart(1);
    EXPECT_EQ(h.messages(), 0u);
    EXPECT_EQ(h.channels(), 0u);
    EXPECT_EQ(h.next("a"), 1u);
    EXPECT_TRUE(h.append_at("a", 1, 1, pairs("a", {"new"})));
    EXPECT_EQ(read_all(h, "a", 1, first), (std::vector<std::string>{"new"}));
}

TEST(ChannelHistory, ASharedLogsHistoryStaysWithinTheTotalBound) {
    channel_history h({.window = 100, .total_messages = 10, .total_bytes = 1 << 20}, codec_options{});
    h.restart(1);
    for (std::uint64_t i = 1; i <= 30; ++i) {
        const std::string c = i % 2 ? "odd" : "even";
        ASSERT_TRUE(h.append_at(c, (i + 1) / 2, i, pairs(c, {"m" + std::to_string(i)})));
    }
    EXPECT_LE(h.messages(), 10u);
    EXPECT_EQ(h.oldest("odd"), 11u);  // sequences 21..30: odd 11..15, even 11..15
    EXPECT_EQ(h.oldest("even"), 11u);
}
