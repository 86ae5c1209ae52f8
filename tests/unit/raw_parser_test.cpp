// The ceiling's framer (bench/peers/raw_frames.hpp): every figure in the bench table is read as
// a fraction of the ceiling, so its frame count must be right whatever the chunking. Each
// feed() must count exactly the frames whose last byte it received.
#include <gtest/gtest.h>

#include "raw_frames.hpp"

#include <string>
#include <vector>

namespace {

struct raw_stream {
    std::string bytes;
    std::vector<std::size_t> frame_ends;  // offset one past each frame's last byte
};

raw_stream raw_stream_of(const std::vector<std::size_t>& sizes) {
    raw_stream s;
    for (std::size_t size : sizes) {
        char header[bench::header_size];
        bench::put_header(header, size);
        s.bytes.append(header, bench::header_size);
        s.bytes.append(size, 'p');
        s.frame_ends.push_back(s.bytes.size());
    }
    return s;
}

TEST(RawParser, CountsEachFrameInTheReadThatEndsItWhateverTheChunking) {
    // Lengths of 1 to 5 digits: from 16 bytes readable a header is read by parse16(), whose
    // value is straight-line code up to four digits and the digit loop from five.
    const raw_stream s = raw_stream_of({16, 0, 100, 1, 16, 16, 300, 0, 0, 26, 16, 9, 1000, 3, 12345, 7});
    for (std::size_t chunk = 1; chunk <= s.bytes.size(); ++chunk) {
        SCOPED_TRACE("chunk " + std::to_string(chunk));
        bench::raw_parser parser;
        std::uint64_t total = 0;
        for (std::size_t at = 0; at < s.bytes.size(); at += chunk) {
            const std::size_t n = std::min(chunk, s.bytes.size() - at);
            std::uint64_t expected = 0;
            for (std::size_t end : s.frame_ends) expected += end > at && end <= at + n;
            ASSERT_EQ(parser.feed(s.bytes.data() + at, n), expected) << "read at " << at;
            total += expected;
        }
        EXPECT_EQ(total, s.frame_ends.size());
        EXPECT_TRUE(parser.at_boundary());
        EXPECT_EQ(parser.payload_left(), 0u);
    }
}

TEST(RawParser, ReportsWhatIsLeftOfAPayload) {
    const raw_stream s = raw_stream_of({1000});
    bench::raw_parser parser;
    EXPECT_EQ(parser.feed(s.bytes.data(), 25), 0u);
    EXPECT_FALSE(parser.at_boundary());
    EXPECT_EQ(parser.payload_left(), 985u);
    EXPECT_EQ(parser.feed(s.bytes.data() + 25, s.bytes.size() - 25), 1u);
    EXPECT_EQ(parser.payload_left(), 0u);
}

}  // namespace
