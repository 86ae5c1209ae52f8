// Header parsing: what real peers send is accepted; everything else fails with a typed error
// whose message shows the header bytes.
#include <gtest/gtest.h>

#include "decode_helpers.hpp"

using namespace framecast;
using framecast::test::decode_whole;

namespace {

// Decodes `header` followed by `payload_len` bytes of 'x'.
test::decoded with_header(std::string header, std::size_t payload_len = 5, codec_options opts = {}) {
    return decode_whole(header + std::string(payload_len, 'x'), opts);
}

void expect_accepts(const std::string& header, std::size_t len) {
    auto r = with_header(header, len);
    ASSERT_FALSE(r.error) << r.message;
    ASSERT_EQ(r.frames.size(), 1u) << "header " << escape_bytes(header);
    EXPECT_EQ(r.frames[0].size(), len);
}

void expect_rejects(const std::string& header, errc e) {
    auto r = with_header(header, 5);
    EXPECT_EQ(r.error, make_error_code(e)) << "header " << escape_bytes(header) << ": " << r.message;
    EXPECT_TRUE(r.frames.empty());
    EXPECT_NE(r.message.find(escape_bytes(header)), std::string::npos)
        << "message should show the header bytes: " << r.message;
}

}  // namespace

TEST(Header, LeftAlignedSpacePaddedAsPythonWrites) { expect_accepts("5         ", 5); }
TEST(Header, RightAligned) { expect_accepts("         5", 5); }
TEST(Header, ZeroPadded) { expect_accepts("0000000005", 5); }
TEST(Header, Centered) { expect_accepts("    5     ", 5); }
TEST(Header, AllDigits) { expect_accepts("0000000012", 12); }
TEST(Header, OtherAsciiWhitespace) { expect_accepts("\t5\r\n      ", 5); }
TEST(Header, EmptyPayloadIsAFrame) { expect_accepts("0         ", 0); }

TEST(Header, NoDigitsRejected) { expect_rejects("          ", errc::header_no_digits); }
TEST(Header, PlusSignRejected) { expect_rejects("+5        ", errc::header_sign); }
TEST(Header, MinusSignRejected) { expect_rejects("-5        ", errc::header_sign); }
TEST(Header, SignAfterSpacesRejected) { expect_rejects("   -5     ", errc::header_sign); }
TEST(Header, UnderscoreRejected) { expect_rejects("1_0       ", errc::header_underscore); }
TEST(Header, InteriorSpaceRejected) { expect_rejects("1 0       ", errc::header_interior_space); }
TEST(Header, NonAsciiRejected) { expect_rejects("5\xc3\xa9       ", errc::header_non_ascii); }
TEST(Header, NonAsciiDigitRejected) { expect_rejects("\xd9\xa5        ", errc::header_non_ascii); }
TEST(Header, LetterRejected) { expect_rejects("5a        ", errc::header_invalid_char); }
TEST(Header, NulRejected) { expect_rejects(std::string("5\0        ", 10), errc::header_invalid_char); }
TEST(Header, HttpRequestRejected) { expect_rejects("GET / HTTP", errc::header_invalid_char); }

TEST(Header, LengthAboveMaximumRejectedBeforePayload) {
    codec_options opts;
    opts.max_message = 100;
    decoder dec(opts);
    std::string header = "101       ";
    std::span<const char> in{header};
    EXPECT_EQ(dec.next(in), decode_event::error);  // no payload byte needed to decide
    EXPECT_EQ(dec.error(), make_error_code(errc::message_too_large));
    EXPECT_NE(dec.error_message().find("101"), std::string::npos) << dec.error_message();
    EXPECT_NE(dec.error_message().find("100"), std::string::npos) << dec.error_message();
}

TEST(Header, LengthAtMaximumAccepted) {
    codec_options opts;
    opts.max_message = 100;
    auto r = with_header("100       ", 100, opts);
    ASSERT_FALSE(r.error) << r.message;
    EXPECT_EQ(r.frames.at(0).size(), 100u);
}

TEST(Header, DefaultMaximumIsTheSeedsBillion) {
    EXPECT_EQ(codec_options{}.max_message, 1'000'000'000u);
    decoder dec;
    std::string header = "1000000001";
    std::span<const char> in{header};
    EXPECT_EQ(dec.next(in), decode_event::error);
    EXPECT_EQ(dec.error(), make_error_code(errc::message_too_large));
}

TEST(Header, TwentyDigitsBeyond64BitsRejectedNotWrapped) {
    codec_options opts;
    opts.header_size = 20;
    opts.max_message = UINT64_MAX;
    decoder dec(opts);
    std::string header = "99999999999999999999";  // > 2^64 - 1
    std::span<const char> in{header};
    EXPECT_EQ(dec.next(in), decode_event::error);
    EXPECT_EQ(dec.error(), make_error_code(errc::message_too_large));
}

TEST(Header, ErrorIsSticky) {
    decoder dec;
    std::string bad = "abc       5         hello";
    std::span<const char> in{bad};
    EXPECT_EQ(dec.next(in), decode_event::error);
    std::string good = "5         hello";
    std::span<const char> in2{good};
    EXPECT_EQ(dec.next(in2), decode_event::error);
    EXPECT_EQ(dec.finish(), make_error_code(errc::header_invalid_char));
}

TEST(Header, ErrorCategoryIsFramecast) {
    std::error_code ec = errc::header_sign;
    EXPECT_STREQ(ec.category().name(), "framecast");
    EXPECT_FALSE(ec.message().empty());
    EXPECT_NE(ec, std::make_error_code(std::errc::invalid_argument));
}

TEST(Header, InvalidHeaderSizeFailsDecoder) {
    for (std::size_t h : {std::size_t{0}, std::size_t{21}}) {
        codec_options opts;
        opts.header_size = h;
        decoder dec(opts);
        std::string bytes = "1 x";
        std::span<const char> in{bytes};
        EXPECT_EQ(dec.next(in), decode_event::error);
        EXPECT_EQ(dec.error(), make_error_code(errc::invalid_header_size));
    }
}

TEST(Header, EscapeBytesLooksLikePython) {
    EXPECT_EQ(escape_bytes("18        "), "b'18        '");
    EXPECT_EQ(escape_bytes(std::string("a\0\xff\n'\\", 6)), "b'a\\x00\\xff\\n\\'\\\\'");
}

TEST(Header, EscapeControlsKeepsUtf8AndDisarmsTerminalControls) {
    // A username that would clear the screen and forge a line, then UTF-8 and a backslash.
    const std::string name = "\x1b[2J\r\nbob\x7f \xc3\xa9\\";
    EXPECT_EQ(escape_controls(name), "\\x1b[2J\\x0d\\x0abob\\x7f \xc3\xa9\\");
    EXPECT_EQ(escape_controls(name, true), "\\x1b[2J\\x0d\\x0abob\\x7f \xc3\xa9\\x5c");
    EXPECT_EQ(escape_controls(""), "");
}
