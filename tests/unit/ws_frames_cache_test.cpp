// ws_frames_cache: a relay unit's WebSocket framing, made once and reused for every client.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "framecast/codec.hpp"
#include "transport/ws.hpp"
#include "transport/ws_frames_cache.hpp"

using namespace framecast;
using namespace framecast::io;

namespace {

std::shared_ptr<const std::string> unit_of(std::initializer_list<std::string> payloads) {
    auto u = std::make_shared<std::string>();
    for (const auto& p : payloads) *u += encode_frame(p);
    return u;
}

std::string ws_frames(std::initializer_list<std::pair<std::string, bool>> messages) {
    std::string out;
    for (const auto& [payload, text] : messages) ws_append_frame(out, payload, text);
    return out;
}

}  // namespace

TEST(WsFramesCache, FramesEachFrameOfAUnitAsOneMessageTextOrBinary) {
    ws_frames_cache cache;
    const std::string binary("\xff\xfe payload", 10);
    auto unit = unit_of({"hello", binary, std::string(300, 'x')});
    auto framed = cache.get(unit, {});
    ASSERT_NE(framed, nullptr);
    EXPECT_EQ(*framed, ws_frames({{"hello", true}, {binary, false}, {std::string(300, 'x'), true}}));
    // The wire bytes themselves, for the first message: FIN + text, length 5, unmasked.
    EXPECT_EQ(framed->substr(0, 7), std::string("\x81\x05hello", 7));
}

TEST(WsFramesCache, AUnitIsFramedOnceForEveryClient) {
    ws_frames_cache cache;
    auto unit = unit_of({"tick"});
    auto first = cache.get(unit, {});
    auto again = cache.get(unit, {});
    ASSERT_NE(first, nullptr);
    EXPECT_EQ(first.get(), again.get());
    // Another unit with the same bytes is another unit: framed on its own.
    auto twin = unit_of({"tick"});
    auto other = cache.get(twin, {});
    EXPECT_NE(other.get(), first.get());
    EXPECT_EQ(*other, *first);
}

TEST(WsFramesCache, ANewUnitAtAFreedUnitsAddressIsNotServedTheOldFrames) {
    ws_frames_cache cache;
    for (int i = 0; i < 100; ++i) {
        // Freed, then one of the same size made: the allocator often gives the same address.
        auto a = unit_of({"message " + std::to_string(i % 10)});
        ASSERT_EQ(*cache.get(a, {}), ws_frames({{"message " + std::to_string(i % 10), true}}));
        a.reset();
        auto b = unit_of({"MESSAGE " + std::to_string(i % 10)});
        ASSERT_EQ(*cache.get(b, {}), ws_frames({{"MESSAGE " + std::to_string(i % 10), true}}));
    }
}

TEST(WsFramesCache, KeepsOnlyAFewEntriesAndRefusesWhatItCannotFrameWhole) {
    ws_frames_cache cache;
    std::vector<std::shared_ptr<const std::string>> units;
    for (std::size_t i = 0; i <= ws_frames_cache::entries; ++i) units.push_back(unit_of({std::to_string(i)}));
    auto first = cache.get(units[0], {});
    for (std::size_t i = 1; i <= ws_frames_cache::entries; ++i) cache.get(units[i], {});
    // entries + 1 units went through: the first was replaced, and is framed anew.
    EXPECT_NE(cache.get(units[0], {}).get(), first.get());
    // Over max_unit bytes: framed per client by the caller.
    EXPECT_EQ(cache.get(unit_of({std::string(ws_frames_cache::max_unit, 'x')}), {}), nullptr);
    // Not whole frames (cut inside a payload), or not frames at all.
    auto cut = std::make_shared<const std::string>(encode_frame("hello").substr(0, 12));
    EXPECT_EQ(cache.get(cut, {}), nullptr);
    EXPECT_EQ(cache.get(std::make_shared<const std::string>("not a header at all"), {}), nullptr);
}
