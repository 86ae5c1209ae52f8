#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include <framecast/codec.hpp>

using namespace framecast;

TEST(Encoder, MatchesPythonLeftAlignedFormat) {
    EXPECT_EQ(encode_frame("your message here!"), "18        your message here!");
    EXPECT_EQ(encode_frame(""), "0         ");
}

TEST(Encoder, HeaderHoldsExactlyHeaderSizeBytes) {
    for (std::size_t h = min_header_size; h <= max_header_size; ++h) {
        frame_header out;
        ASSERT_FALSE(encode_header(7, out, h));
        EXPECT_EQ(out.view(), "7" + std::string(h - 1, ' '));
    }
}

TEST(Encoder, LengthThatDoesNotFitIsAnErrorNotATruncation) {
    frame_header out;
    EXPECT_EQ(encode_header(10'000'000'000ull, out, 10), make_error_code(errc::length_does_not_fit));
    EXPECT_FALSE(encode_header(9'999'999'999ull, out, 10));
    EXPECT_EQ(out.view(), "9999999999");
    EXPECT_EQ(encode_header(10, out, 1), make_error_code(errc::length_does_not_fit));
    EXPECT_FALSE(encode_header(UINT64_MAX, out, 20));
    EXPECT_EQ(out.view(), "18446744073709551615");
}

TEST(Encoder, InvalidHeaderSize) {
    frame_header out;
    EXPECT_EQ(encode_header(1, out, 0), make_error_code(errc::invalid_header_size));
    EXPECT_EQ(encode_header(1, out, 21), make_error_code(errc::invalid_header_size));
}

TEST(Encoder, CodePointsCountsCharacters) {
    codec_options opts;
    opts.unit = length_unit::code_points;
    EXPECT_EQ(encode_frame("héllo", opts), "5         héllo");
    EXPECT_EQ(encode_frame("héllo"), "6         héllo");
    EXPECT_THROW(encode_frame("\xff", opts), std::system_error);
}

TEST(Encoder, AppendFrameLeavesOutputUnchangedOnError) {
    std::string out = "keep";
    codec_options opts;
    opts.header_size = 1;
    EXPECT_EQ(append_frame(out, std::string(10, 'x'), opts), make_error_code(errc::length_does_not_fit));
    EXPECT_EQ(out, "keep");
}

TEST(Encoder, CountCodePoints) {
    EXPECT_EQ(count_code_points("abc"), 3u);
    EXPECT_EQ(count_code_points("😀é"), 2u);
    EXPECT_EQ(count_code_points("\xe2\x82"), std::nullopt);  // cut short
    EXPECT_EQ(count_code_points("\xc1\xbf"), std::nullopt);  // overlong
}

// append_frame and write_frame have fast paths of their own (the digits from a table, short
// payloads copied without a call): every payload size around their limits and every header size
// must give exactly encode_header's header and the payload, and write nothing past the frame.
TEST(Encoder, AppendAndWriteFrameMatchEncodeHeaderForEverySizeAndHeader) {
    for (std::size_t h = min_header_size; h <= max_header_size; ++h) {
        for (std::size_t n = 0; n <= 1100; ++n) {
            const std::string payload(n, static_cast<char>('a' + n % 26));
            codec_options o;
            o.header_size = h;
            frame_header ref;
            const auto ref_ec = encode_header(n, ref, h);
            const std::string want = ref_ec ? "" : std::string(ref.view()) + payload;

            std::string out = "prefix";
            ASSERT_EQ(append_frame(out, payload, o), ref_ec) << "h=" << h << " n=" << n;
            EXPECT_EQ(out, "prefix" + want) << "h=" << h << " n=" << n;

            std::string buf(max_header_size + n + 8, '#');
            std::error_code ec;
            const std::size_t wrote = write_frame(buf.data(), payload, ec, o);
            ASSERT_EQ(ec, ref_ec) << "h=" << h << " n=" << n;
            ASSERT_EQ(wrote, want.size()) << "h=" << h << " n=" << n;
            EXPECT_EQ(buf.substr(0, wrote), want) << "h=" << h << " n=" << n;
            EXPECT_EQ(buf.substr(wrote), std::string(buf.size() - wrote, '#')) << "h=" << h << " n=" << n;
        }
    }
}

// Without options (the default 10-byte header, length in bytes): the fast path up to 9,999
// bytes (three digits from the table, a fourth from 1000 up) and the general path from 10,000
// up. The header is also held to printf's "%-10zu" (Python's f"{n:<10}"), which shares no code
// with the encoder: encode_frame builds frames under 257 bytes with write_frame itself.
TEST(Encoder, WriteFrameWithDefaultOptionsMatchesEncodeFrame) {
    for (std::size_t n = 0; n <= 10100; ++n) {
        const std::string payload(n, static_cast<char>('a' + n % 26));
        const std::string want = encode_frame(payload);
        char header[16];
        ASSERT_EQ(std::snprintf(header, sizeof header, "%-10zu", n), 10) << "n=" << n;
        ASSERT_EQ(want.substr(0, 10), std::string(header, 10)) << "n=" << n;
        std::string buf(max_header_size + n + 8, '#');
        std::error_code ec;
        const std::size_t wrote = write_frame(buf.data(), payload, ec);
        ASSERT_FALSE(ec) << "n=" << n;
        ASSERT_EQ(wrote, want.size()) << "n=" << n;
        EXPECT_EQ(buf.substr(0, wrote), want) << "n=" << n;
        EXPECT_EQ(buf.substr(wrote), std::string(buf.size() - wrote, '#')) << "n=" << n;
    }
}

TEST(Encoder, WriteFrameCountsCodePointsAndRefusesInvalidUtf8) {
    codec_options o;
    o.unit = length_unit::code_points;
    char buf[64];
    std::error_code ec;
    EXPECT_EQ(write_frame(buf, "é!", ec, o), 13u);
    EXPECT_FALSE(ec);
    EXPECT_EQ(std::string(buf, 13), "2         é!");
    EXPECT_EQ(write_frame(buf, "\xc1\xbf", ec, o), 0u);
    EXPECT_EQ(ec, make_error_code(errc::invalid_utf8));
}

// has_non_ascii reads 16-byte lanes in 4 KiB blocks, then 16-byte steps, then the last 8-15
// bytes as two overlapping words or the last 0-7 one at a time: a byte over 0x7f in any of
// those places, at any length around their edges, must be found, and 0x7f must not be.
TEST(Encoder, HasNonAsciiFindsAHighByteAnywhere) {
    std::vector<std::size_t> sizes;
    for (std::size_t n = 0; n <= 80; ++n) sizes.push_back(n);
    for (std::size_t n : {4095u, 4096u, 4097u, 4111u, 4112u, 4120u, 8191u, 8192u, 8200u, 12345u})
        sizes.push_back(n);
    for (std::size_t n : sizes) {
        std::string s(n, '\x7f');
        EXPECT_FALSE(framecast::has_non_ascii(s)) << n;
        // Every place in short strings; in long ones, every place near an edge of the steps.
        std::vector<std::size_t> places;
        for (std::size_t at = 0; at < n; ++at) {
            const auto near = [at](std::size_t edge) { return at + 40 >= edge && at <= edge + 40; };
            if (n <= 80 || near(0) || near(4096) || near(8192) || near(n)) places.push_back(at);
        }
        for (std::size_t at : places) {
            for (char high : {'\x80', '\xff', '\xc3'}) {
                s[at] = high;
                ASSERT_TRUE(framecast::has_non_ascii(s)) << "size " << n << " at " << at;
                // The same bytes at an odd address: loads must not rely on alignment.
                std::string shifted = "a" + s;
                ASSERT_TRUE(framecast::has_non_ascii(std::string_view(shifted).substr(1)))
                    << "size " << n << " at " << at;
            }
            s[at] = '\x7f';
        }
    }
    EXPECT_FALSE(framecast::has_non_ascii(std::string_view{}));
}
