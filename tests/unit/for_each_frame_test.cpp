// decoder::for_each_frame() is a loop over next(): the same frames and events whatever the
// chunking, and afterwards the same length() and header_bytes() as such a loop leaves.
#include <gtest/gtest.h>

#include <framecast/codec.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace framecast;

namespace {

struct batch_seen {
    std::vector<std::string> frames;        // payloads, in order
    std::vector<decode_event> others;       // every event that is not a frame
    std::vector<std::string> last_header;   // header_bytes() after each call that saw a frame
    std::vector<std::uint64_t> last_length; // length() likewise
};

// `wire` fed in reads of `chunk` bytes, decoded by next() or by for_each_frame().
batch_seen decode_by(const std::string& wire, std::size_t chunk, bool batch,
                     codec_options opts = {}, decode_mode mode = decode_mode::whole) {
    batch_seen s;
    decoder dec(opts, mode);
    for (std::size_t at = 0; at < wire.size(); at += chunk) {
        std::span<const char> in(wire.data() + at, std::min(chunk, wire.size() - at));
        for (;;) {
            const std::size_t frames_before = s.frames.size();
            decode_event ev;
            if (batch) {
                ev = dec.for_each_frame(in, [&](std::string_view p) { s.frames.emplace_back(p); });
            } else {
                ev = dec.next(in);
                if (ev == decode_event::frame) s.frames.emplace_back(dec.payload());
            }
            if (s.frames.size() != frames_before) {
                s.last_header.emplace_back(dec.header_bytes());
                s.last_length.push_back(dec.length());
            }
            if (ev == decode_event::frame) continue;
            s.others.push_back(ev);
            if (ev == decode_event::need_more || ev == decode_event::error) break;
        }
        if (!s.others.empty() && s.others.back() == decode_event::error) break;
    }
    return s;
}

std::string wire_of(const std::vector<std::string>& payloads, codec_options opts = {}) {
    std::string wire;
    for (const auto& p : payloads) {
        if (auto ec = append_frame(wire, p, opts)) throw std::system_error(ec);
    }
    return wire;
}

}  // namespace

TEST(ForEachFrame, SameFramesAsNextWhateverTheChunking) {
    // Canonical headers (the fast path), and shapes only the general parse takes: a leading
    // space, a tab, leading zeros; an empty payload; a frame larger than most reads.
    std::string wire = wire_of({"Welcome to the server!", "", "x"});
    wire += " 5\t       hello";
    wire += "007       leading";
    wire += wire_of({std::string(3000, 'z'), "0123456789", "tail"});
    for (std::size_t chunk : {1, 2, 7, 10, 11, 26, 64, 1000, 4096, 100000}) {
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        const batch_seen a = decode_by(wire, chunk, false), b = decode_by(wire, chunk, true);
        ASSERT_EQ(a.frames.size(), 8u);
        EXPECT_EQ(b.frames, a.frames);
        EXPECT_EQ(b.others.back(), decode_event::need_more);
        // After the last call, the accessors describe the last frame, as after next()'s loop.
        ASSERT_FALSE(b.last_header.empty());
        EXPECT_EQ(b.last_header.back(), a.last_header.back());
        EXPECT_EQ(b.last_length.back(), a.last_length.back());
    }
    // One read of everything: the calls see frames in the same order with the same headers.
    const batch_seen whole = decode_by(wire, wire.size(), true);
    EXPECT_EQ(whole.last_header.back(), "4         ");
    EXPECT_EQ(whole.last_length.back(), 4u);
}

TEST(ForEachFrame, StopsAtAnErrorAfterTheFramesBeforeIt) {
    const std::string wire = wire_of({"one", "two"}) + "x3        abc" + wire_of({"never"});
    for (std::size_t chunk : {1, 5, 13, 1000}) {
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        const batch_seen s = decode_by(wire, chunk, true);
        EXPECT_EQ(s.frames, (std::vector<std::string>{"one", "two"}));
        EXPECT_EQ(s.others.back(), decode_event::error);
    }
    // Above max_message: the fast path leaves it to the general parse, which refuses it.
    codec_options small{.max_message = 4};
    const batch_seen s = decode_by(wire_of({"abcd", "abcde"}), 1000, true, small);
    EXPECT_EQ(s.frames, (std::vector<std::string>{"abcd"}));
    EXPECT_EQ(s.others.back(), decode_event::error);
}

TEST(ForEachFrame, StreamingModeReturnsItsEventsToTheCaller) {
    const std::string wire = wire_of({"hello", "", "world!"});
    for (std::size_t chunk : {1, 3, 100}) {
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        const batch_seen a = decode_by(wire, chunk, false, {}, decode_mode::streaming);
        const batch_seen b = decode_by(wire, chunk, true, {}, decode_mode::streaming);
        EXPECT_TRUE(b.frames.empty());
        EXPECT_EQ(b.others, a.others);
        EXPECT_EQ(std::count(b.others.begin(), b.others.end(), decode_event::end), 3);
    }
}

TEST(ForEachFrame, PayloadsAreViewsIntoTheCallersBytes) {
    const std::string wire = wire_of({"alpha", "beta", "gamma"});
    decoder dec;
    std::span<const char> in(wire);
    std::vector<const char*> at;
    EXPECT_EQ(dec.for_each_frame(in, [&](std::string_view p) { at.push_back(p.data()); }),
              decode_event::need_more);
    ASSERT_EQ(at.size(), 3u);
    EXPECT_EQ(at[0], wire.data() + 10);
    EXPECT_EQ(at[2], wire.data() + 10 + 5 + 10 + 4 + 10);
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(dec.payload(), "gamma");
    EXPECT_EQ(dec.payload().data(), at[2]);
}

TEST(ForEachFrame, AnEmptyOrNullSpanIsNeedMore) {
    decoder dec;
    std::span<const char> none;
    int calls = 0;
    const auto ev = dec.for_each_frame(none, [&](std::string_view) { ++calls; });
    EXPECT_EQ(ev, decode_event::need_more);
    EXPECT_EQ(calls, 0);
    EXPECT_TRUE(dec.header_bytes().empty());
}
