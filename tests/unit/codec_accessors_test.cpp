// What the codec exposes so callers need not rebuild it: header_bytes(), truncated(),
// framed_size() and max_length_for(). Expectations are literals, not the codec's own output.
#include <gtest/gtest.h>

#include <framecast/codec.hpp>

#include <cstring>
#include <string>
#include <vector>

using namespace framecast;

// ---- header_bytes() -------------------------------------------------------------------------

TEST(HeaderBytes, EmptyBeforeAnyHeader) {
    decoder dec;
    EXPECT_TRUE(dec.header_bytes().empty());
    std::string part = "12 ";
    std::span<const char> in{part};
    EXPECT_EQ(dec.next(in), decode_event::need_more);
    EXPECT_TRUE(dec.header_bytes().empty());  // not complete yet
}

TEST(HeaderBytes, KeepsTheHeaderExactlyAsReceived) {
    // Leading white space and a tab: the decoder accepts them, a relay must pass them on as is.
    const std::string first = std::string(" 5\t") + std::string(7, ' ');
    const std::string second = "2" + std::string(9, ' ');
    ASSERT_EQ(first.size(), 10u);
    const std::string wire = first + "hello" + second + "hi";
    std::vector<char> buf(wire.begin(), wire.end());
    decoder dec;
    std::span<const char> in{buf.data(), buf.size()};
    ASSERT_EQ(dec.next(in), decode_event::frame);
    EXPECT_EQ(dec.payload(), "hello");
    // Still right once the caller's bytes are gone (the fast path parsed them in place).
    std::vector<char> saved(buf);
    std::memset(buf.data(), 'X', 10);
    EXPECT_EQ(dec.header_bytes(), first);
    std::memcpy(buf.data(), saved.data(), 10);
    ASSERT_EQ(dec.next(in), decode_event::frame);
    EXPECT_EQ(dec.payload(), "hi");
    EXPECT_EQ(dec.header_bytes(), second);
}

TEST(HeaderBytes, SameWhateverTheChunking) {
    struct stream {
        std::size_t header_size;
        std::string wire;
        std::vector<std::string> headers;  // of its frames, in order
    };
    const std::vector<stream> streams{
        {3, "3  abc 2 hi", {"3  ", " 2 "}},
        {5, "  11 hello world0    ", {"  11 ", "0    "}},
        {10, "0         1\t        x", {"0         ", "1\t        "}},
    };
    for (const auto& s : streams) {
        for (std::size_t chunk = 1; chunk <= s.wire.size(); ++chunk) {
            codec_options opts;
            opts.header_size = s.header_size;
            decoder dec(opts);
            std::vector<std::string> got;
            for (std::size_t at = 0; at < s.wire.size(); at += chunk) {
                std::span<const char> in{s.wire.data() + at, std::min(chunk, s.wire.size() - at)};
                for (auto ev = dec.next(in); ev != decode_event::need_more; ev = dec.next(in)) {
                    ASSERT_EQ(ev, decode_event::frame) << dec.error_message();
                    got.emplace_back(dec.header_bytes());
                }
            }
            EXPECT_EQ(got, s.headers) << "header size " << s.header_size << ", chunk " << chunk;
        }
    }
}

TEST(HeaderBytes, ValidThroughStreamingEvents) {
    const std::string first = "4" + std::string(9, ' ');
    const std::string second = " 2" + std::string(8, ' ');
    const std::string wire = first + "abcd" + second + "xy";
    decoder dec({}, decode_mode::streaming);
    std::vector<std::pair<decode_event, std::string>> seen;  // every event but need_more
    for (std::size_t at = 0; at < wire.size(); at += 3) {
        std::span<const char> in{wire.data() + at, std::min<std::size_t>(3, wire.size() - at)};
        for (auto ev = dec.next(in); ev != decode_event::need_more; ev = dec.next(in)) {
            ASSERT_NE(ev, decode_event::error);
            seen.emplace_back(ev, dec.header_bytes());
        }
    }
    ASSERT_FALSE(seen.empty());
    bool in_second = false;
    for (const auto& [ev, h] : seen) {
        if (ev == decode_event::begin && h == second) in_second = true;
        EXPECT_EQ(h, in_second ? second : first) << static_cast<int>(ev);
    }
    EXPECT_TRUE(in_second);
    EXPECT_EQ(seen.front().first, decode_event::begin);
}

TEST(HeaderBytes, ValidAfterCommit) {
    decoder dec;
    std::string head = "6         ab";
    std::span<const char> in{head};
    ASSERT_EQ(dec.next(in), decode_event::need_more);
    auto space = dec.payload_space();
    ASSERT_EQ(space.size(), 4u);
    std::memcpy(space.data(), "cdef", 4);
    ASSERT_EQ(dec.commit(4), decode_event::frame);
    EXPECT_EQ(dec.payload(), "abcdef");
    EXPECT_EQ(dec.header_bytes(), "6         ");
}

TEST(HeaderBytes, TheOffendingHeaderAfterAHeaderError) {
    decoder dec;
    std::string wire = "1_0       xyz";
    std::span<const char> in{wire};
    ASSERT_EQ(dec.next(in), decode_event::error);
    EXPECT_EQ(dec.header_bytes(), "1_0       ");
}

// ---- truncated() ----------------------------------------------------------------------------

namespace {
// Feeds `wire` in chunks of `chunk` bytes, then finish(); returns the decoder.
decoder fed(const std::string& wire, std::size_t chunk, codec_options opts = {}) {
    decoder dec(opts);
    for (std::size_t at = 0; at < wire.size(); at += chunk) {
        std::span<const char> in{wire.data() + at, std::min(chunk, wire.size() - at)};
        while (dec.next(in) != decode_event::need_more) {
            if (dec.error()) return dec;
        }
    }
    dec.finish();
    return dec;
}
}  // namespace

TEST(Truncation, InPayload) {
    const std::string wire = std::string("28        ") + "The tim";  // 7 of 28 bytes
    for (std::size_t chunk : {1u, 4u, 17u}) {
        auto dec = fed(wire, chunk);
        EXPECT_EQ(dec.error(), make_error_code(errc::truncated_frame));
        ASSERT_TRUE(dec.truncated());
        EXPECT_EQ(*dec.truncated(), (truncation{false, 7, 28, length_unit::bytes})) << chunk;
        EXPECT_EQ(to_string(*dec.truncated()), "after 7 of 28 payload bytes");
        // The text existing users read is unchanged.
        EXPECT_EQ(dec.error_message(), "connection closed after 7 of 28 payload bytes");
    }
}

TEST(Truncation, InHeader) {
    for (std::size_t chunk : {1u, 2u, 3u}) {
        auto dec = fed("28 ", chunk);
        ASSERT_TRUE(dec.truncated());
        EXPECT_EQ(*dec.truncated(), (truncation{true, 3, 10, length_unit::bytes}));
        EXPECT_EQ(to_string(*dec.truncated()), "after 3 of 10 header bytes");
        EXPECT_EQ(dec.error_message(), "connection closed after 3 of 10 header bytes b'28 '");
        EXPECT_EQ(dec.header_bytes(), "28 ");  // the part of the header received
    }
}

TEST(Truncation, InCodePoints) {
    codec_options opts;
    opts.unit = length_unit::code_points;
    auto dec = fed("3         \xc3\xa9" "a", 5, opts);  // "éa": 2 of 3 code points
    ASSERT_TRUE(dec.truncated());
    EXPECT_EQ(*dec.truncated(), (truncation{false, 2, 3, length_unit::code_points}));
    EXPECT_EQ(dec.error_message(), "connection closed after 2 of 3 payload code points");
}

TEST(Truncation, EmptyPayloadPartStillCounts) {
    auto dec = fed("5         ", 10);  // the header only
    ASSERT_TRUE(dec.truncated());
    EXPECT_EQ(*dec.truncated(), (truncation{false, 0, 5, length_unit::bytes}));
}

TEST(Truncation, NoneAtACleanEndOrAfterOtherErrors) {
    auto clean = fed("2         hi", 4);
    EXPECT_FALSE(clean.error());
    EXPECT_FALSE(clean.truncated());

    auto bad = fed("x         ", 10);  // a malformed header, then the end
    EXPECT_EQ(bad.error(), make_error_code(errc::header_invalid_char));
    EXPECT_FALSE(bad.truncated());

    decoder fresh;
    EXPECT_FALSE(fresh.truncated());  // before finish()
}

// ---- framed_size() and max_length_for() ------------------------------------------------------

TEST(FramedSize, HeaderPlusPayloadBytes) {
    EXPECT_EQ(framed_size(0), 10u);
    EXPECT_EQ(framed_size(18), 28u);  // "18        your message here!"
    codec_options three;
    three.header_size = 3;
    EXPECT_EQ(framed_size(5, three), 8u);
    static_assert(framed_size(1) == 11);
}

TEST(FramedSize, MatchesWhatTheEncoderWrites) {
    codec_options cp;
    cp.unit = length_unit::code_points;
    const std::string text = "h\xc3\xa9llo";  // 5 code points, 6 bytes
    EXPECT_EQ(framed_size(text.size(), cp), 16u);
    EXPECT_EQ(encode_frame(text, cp).size(), 16u);
    EXPECT_EQ(encode_frame(std::string(1000, 'x')).size(), framed_size(1000));
}

TEST(MaxLengthFor, NinesUpTo19DigitsThenUint64Max) {
    EXPECT_EQ(max_length_for(0), 0u);
    EXPECT_EQ(max_length_for(1), 9u);
    EXPECT_EQ(max_length_for(2), 99u);
    EXPECT_EQ(max_length_for(10), 9'999'999'999ull);
    EXPECT_EQ(max_length_for(19), 9'999'999'999'999'999'999ull);
    EXPECT_EQ(max_length_for(20), 18'446'744'073'709'551'615ull);
    EXPECT_EQ(max_length_for(21), 18'446'744'073'709'551'615ull);
    static_assert(max_length_for(3) == 999);
}

TEST(MaxLengthFor, IsTheEncodersLimit) {
    frame_header out;
    for (std::size_t h = min_header_size; h < max_header_size; ++h) {
        const std::uint64_t max = max_length_for(h);
        EXPECT_FALSE(encode_header(max, out, h)) << h;
        EXPECT_EQ(out.view(), std::string(h, '9')) << h;
        EXPECT_EQ(encode_header(max + 1, out, h), make_error_code(errc::length_does_not_fit)) << h;
    }
    EXPECT_FALSE(encode_header(max_length_for(max_header_size), out, max_header_size));
}
