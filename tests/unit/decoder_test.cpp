// The decoder gives the same frames whatever the chunking, never buffers more than a frame,
// and hands out views into the caller's bytes when a frame arrives whole.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>

#include "decode_helpers.hpp"

using namespace framecast;
using test::decode_chunked;
using test::decode_streaming;
using test::decode_whole;

namespace {

std::string frames_of(const std::vector<std::string>& payloads, codec_options opts = {}) {
    std::string wire;
    for (const auto& p : payloads) {
        if (auto ec = append_frame(wire, p, opts)) throw std::system_error(ec);
    }
    return wire;
}

const std::vector<std::string> sample = {"Welcome to the server!", "", "x",
                                         "The time is 1552068299.01783",
                                         std::string(300, 'z'), "0123456789", "tail"};

// A deliberately simple reference: whole stream in memory, strict left-to-right parse.
std::optional<std::vector<std::string>> reference_decode(std::string_view wire, std::size_t h) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < wire.size()) {
        if (wire.size() - pos < h) return std::nullopt;
        std::string header(wire.substr(pos, h));
        auto first = header.find_first_not_of(" \t\n\v\f\r");
        if (first == std::string::npos) return std::nullopt;
        auto last = header.find_last_not_of(" \t\n\v\f\r");
        std::string digits = header.substr(first, last - first + 1);
        if (digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
        std::size_t len = std::stoull(digits);
        pos += h;
        if (wire.size() - pos < len) return std::nullopt;
        out.emplace_back(wire.substr(pos, len));
        pos += len;
    }
    return out;
}

}  // namespace

TEST(Decoder, WholeStreamInOneRead) {
    auto r = decode_whole(frames_of(sample));
    ASSERT_FALSE(r.error) << r.message;
    EXPECT_EQ(r.frames, sample);
}

TEST(Decoder, OneByteAtATime) {
    auto r = decode_chunked(frames_of(sample), {1});
    ASSERT_FALSE(r.error) << r.message;
    EXPECT_EQ(r.frames, sample);
}

TEST(Decoder, EverySplitPointGivesTheSameFrames) {
    const std::string wire = frames_of(sample);
    for (std::size_t cut = 1; cut < wire.size(); ++cut) {
        auto r = decode_chunked(wire, {cut, wire.size()});
        ASSERT_FALSE(r.error) << "cut " << cut << ": " << r.message;
        ASSERT_EQ(r.frames, sample) << "cut at " << cut;
    }
}

TEST(Decoder, EveryPairOfSplitPointsGivesTheSameFrames) {
    const std::vector<std::string> few = {"ab", "", "Welcome to the server!"};
    const std::string wire = frames_of(few);
    for (std::size_t a = 1; a < wire.size(); ++a) {
        for (std::size_t b = 1; a + b < wire.size(); ++b) {
            auto r = decode_chunked(wire, {a, b, wire.size()});
            ASSERT_FALSE(r.error) << r.message;
            ASSERT_EQ(r.frames, few) << "cuts " << a << "," << b;
        }
    }
}

TEST(Decoder, EveryFixedBufferSizeLikeTheTutorialClient) {
    const std::string wire = frames_of(sample);
    for (std::size_t buf : {1, 2, 3, 7, 9, 10, 11, 16, 17, 31, 64, 4096}) {
        auto r = decode_chunked(wire, {buf});
        ASSERT_FALSE(r.error) << r.message;
        EXPECT_EQ(r.frames, sample) << "buffer " << buf;
    }
}

TEST(Decoder, RandomChunkingMatchesReferenceModel) {
    std::mt19937_64 rng(20261126);
    for (int round = 0; round < 300; ++round) {
        std::size_t h = 1 + rng() % max_header_size;
        codec_options opts;
        opts.header_size = h;
        std::vector<std::string> payloads;
        std::size_t max_len = h >= 4 ? 2000 : (h == 1 ? 9 : (h == 2 ? 99 : 999));
        for (int i = 0, n = static_cast<int>(rng() % 20); i < n; ++i) {
            std::string p(rng() % (max_len + 1), '\0');
            for (auto& c : p) c = static_cast<char>(rng());
            payloads.push_back(std::move(p));
        }
        std::string wire = frames_of(payloads, opts);
        // Sometimes corrupt a byte or cut the stream short: the reference decides the outcome.
        if (rng() % 4 == 0 && !wire.empty()) wire[rng() % wire.size()] = static_cast<char>(rng());
        if (rng() % 4 == 0 && !wire.empty()) wire.resize(rng() % wire.size());
        std::vector<std::size_t> chunks;
        for (int i = 0; i < 50; ++i) chunks.push_back(1 + rng() % 300);
        auto expected = reference_decode(wire, h);
        auto r = decode_chunked(wire, chunks, opts);
        if (expected) {
            ASSERT_FALSE(r.error) << "round " << round << ": " << r.message;
            ASSERT_EQ(r.frames, *expected) << "round " << round;
        } else {
            ASSERT_TRUE(r.error) << "round " << round << ": reference rejects, decoder accepted";
        }
    }
}

TEST(Decoder, HeaderSizeOne) {
    codec_options opts;
    opts.header_size = 1;
    std::vector<std::string> p = {"", "a", "123456789"};
    auto wire = frames_of(p, opts);
    EXPECT_EQ(wire, "01a9123456789");
    auto r = decode_chunked(wire, {1}, opts);
    ASSERT_FALSE(r.error) << r.message;
    EXPECT_EQ(r.frames, p);
}

TEST(Decoder, HeaderSizeTwenty) {
    codec_options opts;
    opts.header_size = 20;
    std::vector<std::string> p = {"twenty", std::string(1000, 'q')};
    auto wire = frames_of(p, opts);
    EXPECT_EQ(wire.substr(0, 20), "6                   ");
    auto r = decode_chunked(wire, {7}, opts);
    ASSERT_FALSE(r.error) << r.message;
    EXPECT_EQ(r.frames, p);
}

TEST(Decoder, FramesArrivingWholeAreViewsIntoCallersBytes) {
    const std::string wire = frames_of({"first", "second", "third"});
    decoder dec;
    std::span<const char> in{wire};
    int frames = 0;
    while (dec.next(in) == decode_event::frame) {
        ++frames;
        EXPECT_GE(dec.payload().data(), wire.data());
        EXPECT_LE(dec.payload().data() + dec.payload().size(), wire.data() + wire.size());
    }
    EXPECT_EQ(frames, 3);
}

TEST(Decoder, TruncatedPayloadReportsBytesReceived) {
    // The brief's example: closed after 7 of 28 payload bytes.
    auto wire = encode_frame("The time is 1552068299.01783").substr(0, 17);
    auto r = decode_whole(wire);
    EXPECT_EQ(r.error, make_error_code(errc::truncated_frame));
    EXPECT_NE(r.message.find("after 7 of 28 payload bytes"), std::string::npos) << r.message;
}

TEST(Decoder, TruncatedHeaderReportsHeaderBytes) {
    auto r = decode_whole("28 ");
    EXPECT_EQ(r.error, make_error_code(errc::truncated_frame));
    EXPECT_NE(r.message.find("after 3 of 10 header bytes"), std::string::npos) << r.message;
}

TEST(Decoder, CleanEndBetweenFramesIsNoError) {
    decoder dec;
    auto wire = encode_frame("done");
    std::span<const char> in{wire};
    EXPECT_EQ(dec.next(in), decode_event::frame);
    EXPECT_TRUE(dec.at_frame_boundary());
    EXPECT_FALSE(dec.finish());
}

TEST(Decoder, SpanningFrameBufferIsBoundedByTheFrame) {
    // A huge frame does not leave a huge buffer behind, and a small one after it decodes.
    std::string big(3 << 20, 'B');
    std::string wire = frames_of({big, "small"});
    auto r = decode_chunked(wire, {65536});
    ASSERT_FALSE(r.error) << r.message;
    ASSERT_EQ(r.frames.size(), 2u);
    EXPECT_EQ(r.frames[0], big);
    EXPECT_EQ(r.frames[1], "small");
}

// ---- streaming mode ---------------------------------------------------------------------

TEST(Streaming, SameFramesAsWholeModeForEveryChunkSize) {
    const std::string wire = frames_of(sample);
    for (std::size_t chunk : {1, 3, 10, 11, 16, 100, 100000}) {
        auto r = decode_streaming(wire, chunk);
        ASSERT_FALSE(r.error) << r.message;
        EXPECT_TRUE(r.message.empty()) << r.message;
        EXPECT_EQ(r.frames, sample) << "chunk " << chunk;
    }
}

TEST(Streaming, GigabyteMessagePassesWithMemoryBoundedByTheReadBuffer) {
    // 1,000,000,000 bytes (the default maximum) fed 64 KiB at a time from one reused buffer:
    // every data piece must be a view into that buffer, so the decoder holds no payload.
    constexpr std::uint64_t total = 1'000'000'000;
    std::string chunk(65536, 'G');
    decoder dec({}, decode_mode::streaming);
    frame_header h;
    ASSERT_FALSE(encode_header(total, h));
    std::span<const char> in{h.data(), h.size()};
    ASSERT_EQ(dec.next(in), decode_event::begin);
    EXPECT_EQ(dec.length(), total);
    std::uint64_t seen = 0;
    bool ended = false;
    while (!ended) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), total - seen));
        if (n == 0) n = 1;  // never reached unless the decoder asks for more than announced
        std::span<const char> piece{chunk.data(), n};
        for (;;) {
            auto ev = dec.next(piece);
            if (ev == decode_event::need_more) break;
            if (ev == decode_event::end) { ended = true; break; }
            ASSERT_EQ(ev, decode_event::data);
            ASSERT_GE(dec.payload().data(), chunk.data());
            ASSERT_LE(dec.payload().data() + dec.payload().size(), chunk.data() + chunk.size());
            seen += dec.payload().size();
        }
        if (seen == total && !ended) {
            std::span<const char> none{};
            ASSERT_EQ(dec.next(none), decode_event::end);
            ended = true;
        }
    }
    EXPECT_EQ(seen, total);
    EXPECT_TRUE(dec.at_frame_boundary());
}

TEST(Streaming, OversizeRejectedAtHeader) {
    codec_options opts;
    opts.max_message = 10;
    auto r = decode_streaming("11        hello world", 4, opts);
    EXPECT_EQ(r.error, make_error_code(errc::message_too_large));
}

// ---- code-point length mode (the tutorial's len(str)) -----------------------------------

TEST(CodePoints, TutorialStyleUtf8FramesDecodeAtEverySplit) {
    codec_options opts;
    opts.unit = length_unit::code_points;
    const std::vector<std::string> texts = {"héllo", "😀🎉", "", "日本語", "plain"};
    const std::string wire = frames_of(texts, opts);
    EXPECT_EQ(wire.substr(0, 10), "5         ");  // "héllo": 5 characters, 6 bytes
    for (std::size_t cut = 1; cut < wire.size(); ++cut) {
        auto r = decode_chunked(wire, {cut, 1}, opts);
        ASSERT_FALSE(r.error) << "cut " << cut << ": " << r.message;
        ASSERT_EQ(r.frames, texts) << "cut " << cut;
    }
    auto s = decode_streaming(wire, 3, opts);
    ASSERT_FALSE(s.error) << s.message;
    EXPECT_EQ(s.frames, texts);
}

TEST(CodePoints, InvalidUtf8IsAnError) {
    codec_options opts;
    opts.unit = length_unit::code_points;
    for (std::string bad : {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x28\xa1"}) {
        auto wire = "3         " + bad + "abc";
        auto r = decode_whole(wire, opts);
        EXPECT_EQ(r.error, make_error_code(errc::invalid_utf8)) << escape_bytes(bad);
    }
}

TEST(CodePoints, BytesBeyondMaximumRejected) {
    codec_options opts;
    opts.unit = length_unit::code_points;
    opts.max_message = 8;
    auto r = decode_whole("4         😀😀😀😀", opts);  // 4 code points, 16 bytes
    EXPECT_EQ(r.error, make_error_code(errc::message_too_large)) << r.message;
}

TEST(CodePoints, ByteModeSeesDifferentLengthForNonAscii) {
    // Why the option exists: the tutorial's header for "héllo" says 5, the bytes are 6.
    auto r = decode_whole("5         héllo", {});
    ASSERT_EQ(r.frames.size(), 1u);
    EXPECT_EQ(r.frames[0], "h\xc3\xa9ll");
    EXPECT_TRUE(r.error);  // the trailing 'o' is a truncated next header
}

TEST(CodePoints, FirstFaultByPositionDecidesWhateverTheChunking) {
    codec_options opts;
    opts.unit = length_unit::code_points;
    opts.max_message = 4;
    // 9 code points announced; bytes 0..3 valid, byte 4 (past the maximum) invalid.
    const std::string over = "9         abcd\xff";
    // 3 code points announced; byte 1 invalid, well inside the maximum.
    const std::string bad = "3         a\xffz";
    for (std::size_t chunk : {1, 2, 3, 11, 100}) {
        EXPECT_EQ(decode_chunked(over, {chunk}, opts).error, make_error_code(errc::message_too_large));
        EXPECT_EQ(decode_chunked(bad, {chunk}, opts).error, make_error_code(errc::invalid_utf8));
    }
}

// ---- reading a payload straight into the decoder (payload_space / commit) ----------------

namespace {

// Decodes `wire` as a client would with reads of at most `chunk` bytes, the first one of
// `first` bytes: whenever the decoder is inside a payload, the next read goes straight into
// payload_space() instead of the read buffer.
std::vector<std::string> decode_direct(std::string_view wire, std::size_t first, std::size_t chunk,
                                       std::size_t* direct_reads = nullptr) {
    decoder dec;
    std::vector<std::string> out;
    std::size_t pos = 0;
    bool first_read = true;
    while (pos < wire.size()) {
        auto space = dec.payload_space();
        if (!space.empty()) {
            std::size_t n = std::min({space.size(), chunk, wire.size() - pos});
            std::memcpy(space.data(), wire.data() + pos, n);
            pos += n;
            if (direct_reads) ++*direct_reads;
            auto ev = dec.commit(n);
            EXPECT_NE(ev, decode_event::error) << dec.error_message();
            if (ev == decode_event::frame) out.emplace_back(dec.payload());
            continue;
        }
        std::size_t n = std::min(first_read ? first : chunk, wire.size() - pos);
        first_read = false;
        std::span<const char> in(wire.data() + pos, n);
        pos += n;
        for (;;) {
            auto ev = dec.next(in);
            if (ev == decode_event::need_more) break;
            EXPECT_EQ(ev, decode_event::frame) << dec.error_message();
            if (ev != decode_event::frame) return out;
            out.emplace_back(dec.payload());
        }
    }
    EXPECT_FALSE(dec.finish()) << dec.error_message();
    return out;
}

}  // namespace

TEST(PayloadSpace, EverySplitPointGivesTheSameFrames) {
    const std::string wire = frames_of(sample);
    for (std::size_t chunk : {1, 2, 7, 10, 11, 64, 1000}) {
        for (std::size_t first = 1; first <= wire.size(); ++first) {
            EXPECT_EQ(decode_direct(wire, first, chunk), sample)
                << "first read " << first << ", then " << chunk;
        }
    }
}

TEST(PayloadSpace, LargeFrameIsReadInPlace) {
    const std::string big(1 << 20, 'L');
    const std::string wire = frames_of({big, "after", big});
    std::size_t direct = 0;
    auto frames = decode_direct(wire, 256 * 1024, 256 * 1024, &direct);
    ASSERT_EQ(frames.size(), 3u);
    EXPECT_EQ(frames[0], big);
    EXPECT_EQ(frames[1], "after");
    EXPECT_EQ(frames[2], big);
    EXPECT_GE(direct, 6u);  // the rest of each big payload went straight into the decoder
}

TEST(PayloadSpace, EmptyBetweenFramesInStreamingAndCodePointModeAndAfterError) {
    decoder dec;
    EXPECT_TRUE(dec.payload_space().empty());  // between frames
    std::string wire = frames_of({"hello"});
    std::span<const char> in(wire.data(), 12);  // header and 2 payload bytes
    EXPECT_EQ(dec.next(in), decode_event::need_more);
    auto space = dec.payload_space();
    ASSERT_EQ(space.size(), 3u);
    std::memcpy(space.data(), "llo", 3);
    EXPECT_EQ(dec.commit(3), decode_event::frame);
    EXPECT_EQ(dec.payload(), "hello");
    EXPECT_TRUE(dec.payload_space().empty());

    decoder streaming({}, decode_mode::streaming);
    std::span<const char> in2(wire.data(), 12);
    EXPECT_EQ(streaming.next(in2), decode_event::begin);
    EXPECT_TRUE(streaming.payload_space().empty());

    decoder cp({.unit = length_unit::code_points});
    std::span<const char> in3(wire.data(), 12);
    EXPECT_EQ(cp.next(in3), decode_event::need_more);
    EXPECT_TRUE(cp.payload_space().empty());

    decoder bad;
    std::string junk = "abc       ";
    std::span<const char> in4(junk);
    EXPECT_EQ(bad.next(in4), decode_event::error);
    EXPECT_TRUE(bad.payload_space().empty());
    EXPECT_EQ(bad.commit(0), decode_event::error);
}

TEST(PayloadSpace, CommitBeyondTheSpaceIsAnError) {
    decoder dec;
    std::string wire = frames_of({"hello"});
    std::span<const char> in(wire.data(), 10);
    EXPECT_EQ(dec.next(in), decode_event::need_more);
    ASSERT_EQ(dec.payload_space().size(), 5u);
    EXPECT_EQ(dec.commit(6), decode_event::error);
    EXPECT_EQ(dec.error(), std::make_error_code(std::errc::invalid_argument));
}

TEST(PayloadSpace, MixingNextAndCommitWithinAFrame) {
    decoder dec;
    std::string wire = frames_of({"abcdefgh", "z"});
    std::span<const char> in(wire.data(), 12);  // "ab"
    EXPECT_EQ(dec.next(in), decode_event::need_more);
    auto space = dec.payload_space();
    ASSERT_EQ(space.size(), 6u);
    std::memcpy(space.data(), "cd", 2);
    EXPECT_EQ(dec.commit(2), decode_event::need_more);
    std::span<const char> rest(wire.data() + 14, wire.size() - 14);  // "efgh" + next frame
    ASSERT_EQ(dec.next(rest), decode_event::frame);
    EXPECT_EQ(dec.payload(), "abcdefgh");
    ASSERT_EQ(dec.next(rest), decode_event::frame);
    EXPECT_EQ(dec.payload(), "z");
}

TEST(Decoder, EmptyDefaultSpanIsSafe) {
    // A default span has a null data(): the decoder must not hand it to memcpy (UBSan).
    decoder dec;
    std::span<const char> none;
    EXPECT_EQ(dec.next(none), decode_event::need_more);
    std::string wire = frames_of({"hi"});
    std::span<const char> in(wire.data(), 3);
    EXPECT_EQ(dec.next(in), decode_event::need_more);
    EXPECT_EQ(dec.next(none), decode_event::need_more);  // mid-header
    std::span<const char> rest(wire.data() + 3, wire.size() - 3);
    ASSERT_EQ(dec.next(rest), decode_event::frame);
    EXPECT_EQ(dec.payload(), "hi");
}

TEST(Decoder, LargeGatheredFrameBufferIsReleasedAfterward) {
    // An idle connection that once received a large message must not keep its memory. The
    // payload view stays valid until the next call; after it, only a small frame's worth stays.
    std::string big(512 * 1024, 'L');
    std::string wire = encode_frame(big);
    decoder dec;
    std::span<const char> first{wire.data(), wire.size() / 2}, rest{wire.data() + wire.size() / 2, wire.size() - wire.size() / 2};
    EXPECT_EQ(dec.next(first), decode_event::need_more);
    ASSERT_EQ(dec.next(rest), decode_event::frame);
    EXPECT_EQ(dec.payload(), big);  // still valid here
    EXPECT_GE(dec.buffered_capacity(), big.size());
    std::span<const char> none{};
    EXPECT_EQ(dec.next(none), decode_event::need_more);
    EXPECT_LE(dec.buffered_capacity(), 64u * 1024);  // released
    // A small gathered frame afterwards still decodes, and its buffer is kept (no churn).
    std::string small = encode_frame("small one");
    std::span<const char> a{small.data(), 12}, b{small.data() + 12, small.size() - 12};
    EXPECT_EQ(dec.next(a), decode_event::need_more);
    ASSERT_EQ(dec.next(b), decode_event::frame);
    EXPECT_EQ(dec.payload(), "small one");
    EXPECT_EQ(dec.next(none), decode_event::need_more);
    EXPECT_GT(dec.buffered_capacity(), 0u);
}

TEST(Decoder, LargeFrameBufferIsReleasedByAWholeSmallFrameAfterIt) {
    // The next frame lies whole in the read, so next() could take its inline fast path; it
    // must still release the large frame's buffer first, whether that frame came by next()
    // or by payload_space()/commit().
    const std::string big(512 * 1024, 'L');
    const std::string wire = encode_frame(big);
    const std::string small = encode_frame("after");
    for (bool by_commit : {false, true}) {
        SCOPED_TRACE(by_commit ? "commit" : "next");
        decoder dec;
        std::span<const char> head{wire.data(), 1000};
        ASSERT_EQ(dec.next(head), decode_event::need_more);
        const std::size_t taken = 1000;
        if (by_commit) {
            auto space = dec.payload_space();
            ASSERT_EQ(space.size(), wire.size() - taken);
            std::memcpy(space.data(), wire.data() + taken, space.size());
            ASSERT_EQ(dec.commit(space.size()), decode_event::frame);
        } else {
            std::span<const char> rest{wire.data() + taken, wire.size() - taken};
            ASSERT_EQ(dec.next(rest), decode_event::frame);
        }
        EXPECT_EQ(dec.payload(), big);
        ASSERT_GE(dec.buffered_capacity(), big.size());
        std::span<const char> in{small};
        ASSERT_EQ(dec.next(in), decode_event::frame);
        EXPECT_EQ(dec.payload(), "after");
        EXPECT_TRUE(in.empty());
        EXPECT_EQ(dec.buffered_capacity(), 0u);  // released on the way to the fast path
    }
}

TEST(Decoder, EmptyDefaultSpanIsFine) {
    // A default span has a null data(): nothing may be copied from it (UBSan checks memcpy).
    decoder dec;
    std::span<const char> none{};
    EXPECT_EQ(dec.next(none), decode_event::need_more);
    std::string wire = encode_frame("after");
    std::span<const char> in{wire};
    ASSERT_EQ(dec.next(in), decode_event::frame);
    EXPECT_EQ(dec.payload(), "after");
}

// The inline fast path reads canonical headers a word at a time: every header size, every
// digit count, and a stray byte at every trailing position must decode exactly as the general
// parse does (a stray byte: an error naming the header, never a frame).
TEST(Decoder, CanonicalHeaderFastPathAtEveryHeaderSizeAndDigitCount) {
    for (std::size_t h = min_header_size; h <= max_header_size; ++h) {
        for (std::size_t len : {0u, 1u, 9u, 10u, 99u, 100u, 255u, 256u, 1000u, 12345u}) {
            codec_options o;
            o.header_size = h;
            o.max_message = 1 << 20;
            frame_header fh;
            if (encode_header(len, fh, h)) continue;  // does not fit this header
            std::string stream = std::string(fh.view()) + std::string(len, 'p') + "tail";
            decoder d(o);
            std::span<const char> in(stream.data(), stream.size());
            ASSERT_EQ(d.next(in), decode_event::frame) << "h=" << h << " len=" << len;
            EXPECT_EQ(d.payload().size(), len);
            EXPECT_EQ(d.header_bytes(), fh.view());
            EXPECT_EQ(in.size(), 4u);
            // A stray byte after the digits, at each position: never a frame.
            const std::size_t digits = fh.view().find(' ');
            for (std::size_t at = digits == std::string_view::npos ? h : digits; at < h; ++at) {
                std::string bad = stream;
                bad[at] = 'x';
                decoder bd(o);
                std::span<const char> bin(bad.data(), bad.size());
                EXPECT_EQ(bd.next(bin), decode_event::error) << "h=" << h << " len=" << len << " at=" << at;
                EXPECT_NE(bd.error_message().find("malformed frame header"), std::string::npos);
            }
        }
    }
}
