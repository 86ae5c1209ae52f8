// The io library's small helpers: line splitter, endpoint text, backoff, JSON escaping.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "framecast/io/backoff.hpp"
#include "framecast/io/endpoint.hpp"
#include "framecast/io/json.hpp"
#include "framecast/io/line_splitter.hpp"

namespace framecast::io {
namespace {

using ev = line_splitter::event;

// Feeds `chunks` one by one, then ends the input; returns the lines, or "!" + the message of
// the first line that is too long (then stops, as the stdin readers do).
std::vector<std::string> split(std::vector<std::string> chunks, std::size_t max_line) {
    line_splitter s(max_line);
    std::vector<std::string> out;
    auto drain = [&](auto&& next) {
        for (;;) {
            switch (next()) {
                case ev::line: out.emplace_back(s.line()); break;
                case ev::need_more: return true;
                case ev::too_long: out.push_back("!" + s.too_long_message()); return false;
            }
        }
    };
    for (const auto& c : chunks) {
        std::string_view in(c);
        if (!drain([&] { return s.next(in); })) return out;
        EXPECT_TRUE(in.empty());
    }
    drain([&] { return s.finish(); });
    return out;
}

using lines = std::vector<std::string>;

TEST(LineSplitter, NewlineAndCrNewlineEndALine) {
    EXPECT_EQ(split({"a\nb\r\nc\n"}, 10), (lines{"a", "b", "c"}));
    EXPECT_EQ(split({"\n\r\n"}, 10), (lines{"", ""}));
}

TEST(LineSplitter, LastLineWithoutNewlineCountsAndLosesATrailingCr) {
    EXPECT_EQ(split({"a\nlast"}, 10), (lines{"a", "last"}));
    EXPECT_EQ(split({"a\nlast\r"}, 10), (lines{"a", "last"}));
    EXPECT_EQ(split({""}, 10), lines{});
}

TEST(LineSplitter, CrInsideALineIsData) {
    EXPECT_EQ(split({"a\rb\n"}, 10), (lines{"a\rb"}));
    EXPECT_EQ(split({"a\r\r\n"}, 10), (lines{"a\r"}));
}

TEST(LineSplitter, LinesSpanningChunksWhateverTheSplit) {
    const std::string input = "hello\r\nworld\nx\r\n\nlast\r";
    for (std::size_t cut = 0; cut <= input.size(); ++cut) {
        EXPECT_EQ(split({input.substr(0, cut), input.substr(cut)}, 5),
                  (lines{"hello", "world", "x", "", "last"}))
            << cut;
    }
    std::vector<std::string> bytes;
    for (char c : input) bytes.emplace_back(1, c);
    EXPECT_EQ(split(bytes, 5), (lines{"hello", "world", "x", "", "last"}));
}

TEST(LineSplitter, AWholeLineInAChunkIsAViewIntoIt) {
    line_splitter s(100);
    std::string chunk = "abc\ndef";
    std::string_view in(chunk);
    ASSERT_EQ(s.next(in), ev::line);
    EXPECT_EQ(s.line().data(), chunk.data());
    EXPECT_EQ(s.line_number(), 1u);
}

TEST(LineSplitter, ALineOfExactlyTheLimitFitsWithItsCr) {
    EXPECT_EQ(split({"12345\r", "\n"}, 5), (lines{"12345"}));
    EXPECT_EQ(split({"1234", "5\r\n"}, 5), (lines{"12345"}));
    EXPECT_EQ(split({"12345\r"}, 5), (lines{"12345"}));
}

TEST(LineSplitter, ALongerLineIsAnErrorNamingItsLengthAndTheLimit) {
    EXPECT_EQ(split({"ok\n123456\nnever\n"}, 5),
              (lines{"ok", "!line 2 is longer than the largest message (5 bytes): 6 bytes"}));
    EXPECT_EQ(split({"12", "3456\n"}, 5),
              (lines{"!line 1 is longer than the largest message (5 bytes): 6 bytes"}));
    EXPECT_EQ(split({"123456\r"}, 5),
              (lines{"!line 1 is longer than the largest message (5 bytes): at least 6 bytes"}));
    EXPECT_EQ(split({"123456", "\r"}, 5),
              (lines{"!line 1 is longer than the largest message (5 bytes): at least 6 bytes"}));
    // Its end not seen yet: never buffered beyond the limit (+1 for a '\r').
    EXPECT_EQ(split({"1234567"}, 5),
              (lines{"!line 1 is longer than the largest message (5 bytes): at least 7 bytes"}));
    EXPECT_EQ(split({"12345x", "y\n"}, 5),
              (lines{"!line 1 is longer than the largest message (5 bytes): 7 bytes"}));
    EXPECT_EQ(split({"12345x"}, 5),
              (lines{"!line 1 is longer than the largest message (5 bytes): 6 bytes"}));
}

TEST(LineSplitter, SkipLineGoesOnWithTheNextLine) {
    line_splitter s(3);
    std::string a = "ok\nwaytoolong", b = "still\nnext\r\n";
    std::vector<std::string> got;
    for (std::string_view in : {std::string_view(a), std::string_view(b)}) {
        for (auto e = s.next(in); e != ev::need_more; e = s.next(in)) {
            if (e == ev::too_long) {
                got.push_back("!" + std::to_string(s.line_number()));
                s.skip_line();
            } else {
                got.emplace_back(s.line());
            }
        }
    }
    EXPECT_EQ(s.finish(), ev::need_more);
    EXPECT_EQ(got, (lines{"ok", "!2", "!3"}));  // "next" is too long too
}

TEST(Endpoint, ParsesHostPortBracketedV6AndPortAlone) {
    auto hp = parse_host_port("example.org:80");
    EXPECT_EQ(hp.host, "example.org");
    EXPECT_EQ(hp.port, 80);
    hp = parse_host_port("[::1]:1243");
    EXPECT_EQ(hp.host, "::1");
    EXPECT_EQ(hp.port, 1243);
    hp = parse_host_port(":9000");
    EXPECT_EQ(hp.host, "");
    EXPECT_EQ(hp.port, 9000);
    hp = parse_host_port("0");
    EXPECT_EQ(hp.host, "");
    EXPECT_EQ(hp.port, 0);
}

TEST(Endpoint, RefusesWhatIsNotAnEndpointWithAReason) {
    auto message = [](std::string_view text) {
        try {
            parse_host_port(text);
        } catch (const std::invalid_argument& e) {
            return std::string(e.what());
        }
        return std::string("parsed");
    };
    EXPECT_EQ(message("h:99999"), "'h:99999': port must be a number from 0 to 65535");
    EXPECT_EQ(message("h:"), "'h:': port must be a number from 0 to 65535");
    EXPECT_EQ(message("h:1x"), "'h:1x': port must be a number from 0 to 65535");
    EXPECT_EQ(message("::1:80"), "'::1:80': write an IPv6 address as [ADDR]:PORT");
    EXPECT_EQ(message("[::1]80"), "'[::1]80' is not [IPv6]:PORT");
    EXPECT_EQ(message("[::1"), "'[::1' is not [IPv6]:PORT");
}

TEST(Endpoint, FormatsV6InBracketsAndV4MappedAsV4) {
    EXPECT_EQ(format_host_port("127.0.0.1", 80), "127.0.0.1:80");
    EXPECT_EQ(format_host_port("::1", 80), "[::1]:80");
    EXPECT_EQ(format_host_port("", 80), ":80");
    EXPECT_EQ(format_host_port(parse_host_port("[fe80::1]:7")), "[fe80::1]:7");
    EXPECT_EQ(format_endpoint(asio::ip::make_address("::ffff:10.0.0.1"), 5), "10.0.0.1:5");
    EXPECT_EQ(format_endpoint(asio::ip::tcp::endpoint(asio::ip::make_address("::1"), 6)),
              "[::1]:6");
    EXPECT_EQ(format_endpoint(asio::ip::tcp::endpoint(asio::ip::make_address("10.1.2.3"), 7)),
              "10.1.2.3:7");
}

using std::chrono::milliseconds;

TEST(Backoff, DecorrelatedStaysBetweenMinAndMaxAndGrows) {
    backoff b({.min = milliseconds(100), .max = milliseconds(2000)}, 42);
    backoff::duration previous = milliseconds(100), largest{};
    for (int i = 0; i < 200; ++i) {
        auto d = b.next();
        EXPECT_GE(d, milliseconds(100));
        EXPECT_LE(d, milliseconds(2000));
        EXPECT_LE(d, 3 * previous);
        previous = d;
        largest = std::max(largest, d);
    }
    EXPECT_GT(largest, milliseconds(1500));  // it does grow toward max
}

TEST(Backoff, FullJitterWindowDoublesUpToMax) {
    backoff b({.min = milliseconds(100), .max = milliseconds(1000), .kind = backoff::jitter::full},
              7);
    const milliseconds windows[] = {milliseconds(100), milliseconds(200), milliseconds(400),
                                    milliseconds(800), milliseconds(1000), milliseconds(1000)};
    for (auto w : windows) {
        auto d = b.next();
        EXPECT_GE(d, backoff::duration::zero());
        EXPECT_LE(d, w);
    }
}

TEST(Backoff, SeededSequencesRepeatAndResetStartsOver) {
    backoff a({.min = milliseconds(10), .max = milliseconds(10000)}, 1234);
    backoff b({.min = milliseconds(10), .max = milliseconds(10000)}, 1234);
    std::vector<backoff::duration> first;
    for (int i = 0; i < 10; ++i) {
        first.push_back(a.next());
        EXPECT_EQ(first.back(), b.next());
    }
    a.reset();
    EXPECT_LE(a.next(), milliseconds(30));  // from min again: at most 3 * min
}

TEST(Backoff, MinAboveMaxIsMax) {
    backoff b({.min = milliseconds(100), .max = milliseconds(0)}, 1);
    EXPECT_EQ(b.next(), backoff::duration::zero());
    backoff c({.min = milliseconds(100), .max = milliseconds(50)}, 1);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(c.next(), milliseconds(50));
}

TEST(Json, EscapesQuotesBackslashesAndControls) {
    std::string out;
    append_json_string(out, "a\"b\\c\n\r\t\b\f\x01\x1f\x7f é");
    EXPECT_EQ(out, "a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f é");
    out.clear();
    append_json_string(out, std::string_view("\0x", 2));
    EXPECT_EQ(out, "\\u0000x");
    out.clear();
    append_json_string(out, "plain");
    EXPECT_EQ(out, "plain");
}

}  // namespace
}  // namespace framecast::io
