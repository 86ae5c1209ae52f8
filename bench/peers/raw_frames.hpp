// The ceiling's framer: the least work that can still find frame boundaries in the byte stream
// (no validation beyond "digits then spaces", no copies of payload bytes, no allocation).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace bench {

inline constexpr std::size_t header_size = 10;

// Appends the frame header for `len`: digits then spaces, like Python's f"{len:<10}".
inline void put_header(char* out, std::uint64_t len) {
    char tmp[32];
    int n = std::snprintf(tmp, sizeof tmp, "%llu", static_cast<unsigned long long>(len));
    std::memset(out, ' ', header_size);
    std::memcpy(out, tmp, static_cast<std::size_t>(n));
}

// Counts frames in a stream fed in arbitrary pieces. Payload bytes are skipped where they lie.
class raw_parser {
public:
    // Returns the number of frames completed by these bytes.
    std::uint64_t feed(const char* p, std::size_t n) {
        std::uint64_t done = 0;
        while (n > 0) {
            // Whole frames lying in the buffer: header and payload skipped in one step (as
            // framecast's decoder takes them: a ceiling must not do more per frame than it does).
            // Back here after every frame finished piecemeal: a read rarely ends on a frame
            // boundary, and until session 22 this loop ran only at the start of feed(), so
            // every read after the first went the slow way (framecast-direct then beat the
            // ceiling at 16 B).
            if (!in_payload_ && fill_ == 0) {
                while (n >= header_size) {
                    const std::uint64_t len = n >= 16 ? parse16(p) : parse(p);
                    if (n - header_size < len) break;
                    p += header_size + len;
                    n -= header_size + static_cast<std::size_t>(len);
                    ++done;
                }
                if (n == 0) break;
            }
            if (need_ == 0 && !in_payload_) {
                // Header: fast path when all of it lies in the buffer.
                if (fill_ == 0 && n >= header_size) {
                    start_payload(parse(p));
                    p += header_size;
                    n -= header_size;
                } else {
                    std::size_t take = std::min(header_size - fill_, n);
                    std::memcpy(hdr_ + fill_, p, take);
                    fill_ += take;
                    p += take;
                    n -= take;
                    if (fill_ < header_size) break;
                    fill_ = 0;
                    start_payload(parse(hdr_));
                }
                if (!in_payload_) ++done;  // empty payload
                continue;
            }
            std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(need_, n));
            need_ -= take;
            p += take;
            n -= take;
            if (need_ == 0) {
                in_payload_ = false;
                ++done;
            }
        }
        return done;
    }
    bool at_boundary() const { return !in_payload_ && fill_ == 0; }
    // Payload bytes of the current frame still to come (0 between frames).
    std::uint64_t payload_left() const { return in_payload_ ? need_ : 0; }

private:
    static std::uint64_t parse(const char* h) {
        std::uint64_t v = 0;
        std::size_t i = 0;
        for (; i < header_size && h[i] >= '0' && h[i] <= '9'; ++i)
            v = v * 10 + static_cast<std::uint64_t>(h[i] - '0');
        if (i == 0) {
            std::fprintf(stderr, "ceiling: malformed header\n");
            std::exit(1);
        }
        return v;
    }
    // parse() with 16 bytes readable at h: the digits' count from where the first space is (one
    // 16-byte compare), then their value without a loop up to four of them. framecast's decoder
    // reads its header so since session 24, and checks more (every byte a digit or a space, the
    // limit); a ceiling must not do more per frame than it does (docs/bench.md, "A header read
    // sixteen bytes at a time").
    static std::uint64_t parse16(const char* h) {
#if defined(__SSE2__)
        const auto spaces = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(h)), _mm_set1_epi8(' '))));
        const auto* p = reinterpret_cast<const unsigned char*>(h);
        switch (__builtin_ctz(spaces | 0x400u)) {  // bit 10: ten digits, no space
            case 1: return p[0] - 48u;
            case 2: return (p[0] - 48u) * 10u + (p[1] - 48u);
            case 3: return (p[0] - 48u) * 100u + (p[1] - 48u) * 10u + (p[2] - 48u);
            case 4:
                return (p[0] - 48u) * 1000u + (p[1] - 48u) * 100u + (p[2] - 48u) * 10u + (p[3] - 48u);
            default: break;
        }
#endif
        return parse(h);
    }
    void start_payload(std::uint64_t len) {
        need_ = len;
        in_payload_ = len > 0;
    }
    char hdr_[header_size]{};
    std::size_t fill_ = 0;
    std::uint64_t need_ = 0;
    bool in_payload_ = false;
};

}  // namespace bench
