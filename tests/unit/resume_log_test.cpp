// The resume history on its own: offsets, reads from any position (inside a unit too), pieces
// bounded in bytes, eviction by count and by bytes, and the memory budget's entry account.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "decode_helpers.hpp"
#include "memory_budget.hpp"
#include "resume_log.hpp"

using namespace framecast;
using namespace framecast::io;

namespace {

relay_unit unit_of(const std::vector<std::string>& payloads) {
    codec_options codec;
    relay_unit_builder b(codec);
    for (const auto& p : payloads) EXPECT_FALSE(b.append(p));
    return b.take();
}

std::vector<std::string> payloads_of(const std::string& bytes) {
    return test::decode_whole(bytes).frames;
}

}  // namespace

TEST(ResumeLog, OffsetsStartAtOneAndCountMessages) {
    resume_log log({}, codec_options{});
    EXPECT_EQ(log.next(), 1u);
    EXPECT_EQ(log.oldest(), 1u);
    EXPECT_EQ(log.append(unit_of({"a", "b", "c"})), 1u);
    EXPECT_EQ(log.append(unit_of({"d"})), 4u);
    EXPECT_EQ(log.next(), 5u);
    EXPECT_EQ(log.messages(), 4u);
    EXPECT_EQ(log.units(), 2u);
}

TEST(ResumeLog, ReadsFromInsideAUnitOn) {
    resume_log log({}, codec_options{});
    log.append(unit_of({"a", "b", "c"}));
    log.append(unit_of({"d", "e"}));
    std::string out;
    std::uint64_t first = 0;
    EXPECT_EQ(log.read(2, 1 << 20, out, first), 4u);
    EXPECT_EQ(first, 2u);
    EXPECT_EQ(payloads_of(out), (std::vector<std::string>{"b", "c", "d", "e"}));
    out.clear();
    EXPECT_EQ(log.read(5, 1 << 20, out, first), 1u);
    EXPECT_EQ(payloads_of(out), std::vector<std::string>{"e"});
    out.clear();
    EXPECT_EQ(log.read(6, 1 << 20, out, first), 0u);  // nothing newer
    EXPECT_EQ(first, 0u);
    EXPECT_TRUE(out.empty());
}

TEST(ResumeLog, PiecesAreBoundedButNeverEmpty) {
    resume_log log({}, codec_options{});
    for (int i = 0; i < 100; ++i) log.append(unit_of({std::string(90, 'x')}));  // 100 B frames
    std::string out;
    std::uint64_t first = 0;
    EXPECT_EQ(log.read(1, 1000, out, first), 10u);
    EXPECT_EQ(out.size(), 1000u);
    out.clear();
    EXPECT_EQ(log.read(1, 10, out, first), 1u);  // one message even past the bound
}

TEST(ResumeLog, KeepsAtLeastTheWindowAndEvictsOldest) {
    resume_log log({.messages = 10, .bytes = 1 << 20}, codec_options{});
    for (int i = 1; i <= 25; ++i) log.append(unit_of({std::to_string(i)}));
    EXPECT_EQ(log.messages(), 10u);
    EXPECT_EQ(log.oldest(), 16u);
    std::string out;
    std::uint64_t first = 0;
    // An older position reads from the oldest held: the caller sees the gap in `first`.
    EXPECT_EQ(log.read(3, 1 << 20, out, first), 10u);
    EXPECT_EQ(first, 16u);
    EXPECT_EQ(payloads_of(out).front(), "16");
}

TEST(ResumeLog, ByteBoundEvictsButKeepsTheNewestUnit) {
    resume_log log({.messages = 1000, .bytes = 250}, codec_options{});
    for (int i = 0; i < 10; ++i) log.append(unit_of({std::string(90, 'x')}));
    EXPECT_LE(log.bytes(), 250u);
    EXPECT_EQ(log.messages(), 2u);
    log.append(unit_of({std::string(1000, 'y')}));  // larger than the bound alone
    EXPECT_EQ(log.messages(), 1u);
    EXPECT_EQ(log.oldest(), 11u);
}

TEST(ResumeLog, HeldUnitsAreInTheMemoryBudget) {
    auto budget = std::make_shared<memory_budget>(0);
    {
        resume_log log({.messages = 5, .bytes = 1 << 20}, codec_options{}, budget.get());
        for (int i = 0; i < 8; ++i) log.append(budget->track(unit_of({"payload"})));
        EXPECT_EQ(budget->used(), 5 * (17 + memory_budget::entry_cost));
    }
    EXPECT_EQ(budget->used(), 0u);
}

// A shared log's numbering (serve --resume --backplane): offsets as given, a repeat refused,
// a hole empties what was held so the history stays contiguous.
TEST(ResumeLog, AppendAtKeepsTheSharedLogsOffsets) {
    resume_log log({}, codec_options{});
    log.reset(41);
    EXPECT_EQ(log.next(), 41u);
    EXPECT_EQ(log.oldest(), 41u);
    EXPECT_TRUE(log.append_at(41, unit_of({"a", "b"})));
    EXPECT_TRUE(log.append_at(43, unit_of({"c"})));
    EXPECT_FALSE(log.append_at(42, unit_of({"x"})));  // already held
    EXPECT_EQ(log.next(), 44u);
    std::string out;
    std::uint64_t first = 0;
    EXPECT_EQ(log.read(42, 1 << 20, out, first), 2u);
    EXPECT_EQ(first, 42u);
    EXPECT_EQ(payloads_of(out), (std::vector<std::string>{"b", "c"}));
    EXPECT_TRUE(log.append_at(50, unit_of({"d"})));  // 44..49 never seen here
    EXPECT_EQ(log.oldest(), 50u);
    EXPECT_EQ(log.messages(), 1u);
    EXPECT_EQ(log.next(), 51u);
    log.reset(1);
    EXPECT_EQ(log.messages(), 0u);
    EXPECT_EQ(log.units(), 0u);
    EXPECT_EQ(log.next(), 1u);
}
