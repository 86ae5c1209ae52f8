// The README's C++ example, compiled and run as written: CMake copies the README's ```cpp block
// into readme_snippet.inc, included below with the names it leaves to the reader (payload, buf,
// n, write_two_buffers, deliver, log, close) bound to test doubles. A renamed API or an example
// that no longer does what its comments say fails here.
#include <framecast/codec.hpp>

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace {

struct outcome {
    std::string wire;
    std::vector<std::string> delivered;
    std::string logged;
    bool closed = false;
};

// Runs the README's example over `input` (what one read returned) with `payload` to encode.
outcome run_readme_example(std::string_view payload, std::string input) {
    outcome o;
    auto write_two_buffers = [&](std::string_view a, std::string_view b) {
        o.wire.append(a);
        o.wire.append(b);
    };
    auto deliver = [&](std::string_view p) { o.delivered.emplace_back(p); };
    auto log = [&](std::string_view m) { o.logged = m; };
    auto close = [&] { o.closed = true; };
    const char* buf = input.data();
    const std::size_t n = input.size();
    do {  // the example breaks out of its loop; this gives the include a scope of its own
#include "readme_snippet.inc"
    } while (false);
    return o;
}

}  // namespace

TEST(ReadmeExample, EncodesTheHeaderBesideThePayload) {
    EXPECT_EQ(run_readme_example("your message here!", "").wire, "18        your message here!");
}

TEST(ReadmeExample, DecodesEveryFrameOfARead) {
    const auto o = run_readme_example("x", "5         hello0         3         abc");
    EXPECT_EQ(o.delivered, (std::vector<std::string>{"hello", "", "abc"}));
    EXPECT_FALSE(o.closed);
}

TEST(ReadmeExample, LogsTheErrorItsCommentShowsAndCloses) {
    const auto o = run_readme_example("x", "ab        ");
    EXPECT_TRUE(o.closed);
    EXPECT_EQ(o.logged, "malformed frame header b'ab        ': invalid character at offset 0");
}
