// The framecast wire format, sans I/O.
//
// A frame is a header of exactly H bytes (default 10, 1..20 allowed) holding the payload length
// in ASCII decimal, left-aligned and space-padded (Python: f"{len(msg):<10}"), then the payload.
// Nothing here touches a socket: the encoder fills a small header buffer (the payload is sent
// from where it lies), the decoder takes whatever bytes arrived and hands back whole frames.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "framecast/error.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>  // the decoder's header check (detail::canonical_length_10)
#endif

namespace framecast {

inline constexpr std::size_t default_header_size = 10;
inline constexpr std::size_t min_header_size = 1;
inline constexpr std::size_t max_header_size = 20;
// The seed's "truly maximal message size".
inline constexpr std::uint64_t default_max_message = 1'000'000'000;

// What the header's number counts.
enum class length_unit {
    bytes,        // the payload's length in bytes (the default; what every framecast peer sends)
    code_points,  // UTF-8 code points, for peers that put Python's len(str) in the header
};

struct codec_options {
    std::size_t header_size = default_header_size;
    // Largest payload accepted, in bytes. A header announcing more fails before any payload
    // byte is buffered.
    std::uint64_t max_message = default_max_message;
    length_unit unit = length_unit::bytes;
};

// Bytes on the wire of a frame whose payload is `payload_bytes` bytes: the header, then the
// payload (in either length unit, what the header counts does not change what is sent).
constexpr std::size_t framed_size(std::size_t payload_bytes, const codec_options& opts = {}) noexcept {
    return opts.header_size + payload_bytes;
}

// The largest length a header of `header_size` digits can hold: 10^header_size - 1, capped at
// UINT64_MAX (from 20 digits up; the decoder's lengths are 64-bit); 0 for a header of 0 digits.
constexpr std::uint64_t max_length_for(std::size_t header_size) noexcept {
    std::uint64_t max = 0;
    for (std::size_t i = 0; i < header_size; ++i) {
        if (max > (UINT64_MAX - 9) / 10) return UINT64_MAX;  // one more digit would overflow
        max = max * 10 + 9;
    }
    return max;
}

// ---------------------------------------------------------------------------------------------
// Encoding

// The header of one frame, in a small inline buffer.
class frame_header {
public:
    std::string_view view() const noexcept { return {bytes_.data(), size_}; }
    const char* data() const noexcept { return bytes_.data(); }
    std::size_t size() const noexcept { return size_; }

private:
    friend std::error_code encode_header(std::uint64_t, frame_header&, std::size_t) noexcept;
    std::array<char, max_header_size> bytes_{};
    std::size_t size_ = 0;
};

// Writes the header for a payload of `length` units: the decimal digits, then spaces up to
// `header_size`. Fails with length_does_not_fit (never truncates) or invalid_header_size.
std::error_code encode_header(std::uint64_t length, frame_header& out,
                              std::size_t header_size = default_header_size) noexcept;

// Writes the header for `payload` under `opts` (counting code points when asked; invalid UTF-8
// then fails). Does not check opts.max_message: that bounds what a decoder accepts.
std::error_code encode_header(std::string_view payload, frame_header& out,
                              const codec_options& opts = {}) noexcept;

// Appends header and payload to `out` (for callers that batch many small frames into one
// buffer). On error `out` is unchanged.
std::error_code append_frame(std::string& out, std::string_view payload,
                             const codec_options& opts = {});

namespace detail {
// write_frame's path for other header sizes, code points and payloads of 10,000 bytes and more.
std::size_t write_frame_general(char* out, std::string_view payload, std::error_code& ec,
                                const codec_options& opts) noexcept;

// The first four bytes of the usual header of a payload of v bytes, v under 1000, as one
// little-endian word: v's digits left-aligned, spaces after ("16  " for 16). 4 KB, built at
// compile time. write_frame writes a header as this word under four spaces, one 8-byte store, and
// two more spaces: one load and no branch on the number of digits, where the digits written
// over ten spaces took up to three stores into the same 8 bytes and two branches (a loop of
// write_frame into a 256 KiB batch, 16 B / 100 B payloads: 1.37 / 3.43-3.52 ns a frame against
// 1.74-1.77 / 4.25-4.59; docs/bench.md, "Seven pairs at every size"). From 1000 to 9999 bytes
// the word of v / 10 gives the first three digits and the last takes its fourth byte (1 KiB:
// 12.3 ns a frame against 18.1 by the general path).
struct header_words {
    std::uint32_t word[1000];
};

constexpr header_words make_header_words() noexcept {
    header_words t{};
    for (unsigned v = 0; v < 1000; ++v) {
        unsigned char c[4] = {' ', ' ', ' ', ' '};
        unsigned n = v >= 100 ? 3 : v >= 10 ? 2 : 1;
        for (unsigned i = n, x = v; i-- > 0; x /= 10) c[i] = static_cast<unsigned char>('0' + x % 10);
        t.word[v] = std::uint32_t{c[0]} | std::uint32_t{c[1]} << 8 | std::uint32_t{c[2]} << 16 |
                    std::uint32_t{c[3]} << 24;
    }
    return t;
}

inline constexpr header_words short_headers = make_header_words();

// Copies up to 16 bytes with two overlapping loads and stores, no call.
inline void copy_small(char* to, const char* from, std::size_t n) noexcept {
    if (n >= 8) {
        std::uint64_t a, b;
        std::memcpy(&a, from, 8);
        std::memcpy(&b, from + n - 8, 8);
        std::memcpy(to, &a, 8);
        std::memcpy(to + n - 8, &b, 8);
    } else if (n >= 4) {
        std::uint32_t a, b;
        std::memcpy(&a, from, 4);
        std::memcpy(&b, from + n - 4, 4);
        std::memcpy(to, &a, 4);
        std::memcpy(to + n - 4, &b, 4);
    } else {
        for (std::size_t i = 0; i < n; ++i) to[i] = from[i];
    }
}

// write_frame's default options, one object: a default argument of `codec_options{}` was a
// temporary that a caller's loop built on its stack for every frame, and the call per frame
// that may write memory then reloaded the loop's state (docs/bench.md, "Paired repeats").
inline constexpr codec_options default_options{};
}  // namespace detail

// Writes header and payload into `out`, which has room for at least
// max_header_size + payload.size() bytes, and returns how many it wrote; on error returns 0
// and sets `ec` (left as it was on success). For callers that batch many small frames into a
// buffer of their own: no capacity check and no allocation per frame, the least a frame can
// cost. Inline, so a caller's loop keeps no call per frame: the usual header (10 bytes, a length
// in bytes under 10,000) is one word from a table and two spaces (detail::short_headers;
// codec_bench before the table: 1.2 ns per 16-byte frame, 2.1-2.4 out of line; append_frame 9.0 ns;
// docs/bench.md).
inline std::size_t write_frame(char* out, std::string_view payload, std::error_code& ec,
                               const codec_options& opts = detail::default_options) noexcept {
    const std::size_t v = payload.size();
    // The table's word puts the header's first byte first only on little-endian targets;
    // big-endian ones take the general path.
    if (std::endian::native != std::endian::little || opts.unit != length_unit::bytes ||
        opts.header_size != default_header_size || v >= 10000) [[unlikely]] {
        return detail::write_frame_general(out, payload, ec, opts);
    }
    static_assert(default_header_size == 10);
    const std::uint32_t digits =
        v < 1000 ? detail::short_headers.word[v]
                 : (detail::short_headers.word[v / 10] & 0x00ffffffU) |
                       static_cast<std::uint32_t>('0' + v % 10) << 24;
    const std::uint64_t head = 0x2020202000000000ULL | digits;
    std::memcpy(out, &head, 8);
    std::memcpy(out + 8, "  ", 2);
    if (v <= 16) {
        detail::copy_small(out + default_header_size, payload.data(), v);
    } else {
        std::memcpy(out + default_header_size, payload.data(), v);
    }
    return default_header_size + v;
}

// Header and payload as one string; throws std::system_error on error. Convenient, copies.
std::string encode_frame(std::string_view payload, const codec_options& opts = {});

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers

// Number of code points in `s`, or nullopt when `s` is not valid UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF).
std::optional<std::size_t> count_code_points(std::string_view s) noexcept;

// True when some byte of `s` is 0x80 or above (not ASCII). `connect -o lines` asks this of
// every message; 16 bytes at a time it scans about as fast as memchr (codec_bench: 80-93 GB/s
// at 64 KiB and 1 MiB, against 4.1-5.1 GB/s for the byte-at-a-time std::any_of it replaced;
// docs/bench.md, "The relay at 1 MiB").
bool has_non_ascii(std::string_view s) noexcept;

// Python-bytes-repr-like escaping for messages: printable ASCII as is, the rest as \xNN.
std::string escape_bytes(std::string_view s);

// Text a peer chose (a username, a chat line), made safe for a terminal or a log line:
// control characters (C0 and DEL) as \xNN so they cannot move the cursor, clear the screen or
// forge a line, and C1 controls, line and paragraph separators (U+2028/9) and bidirectional
// controls (U+061C, U+200E/F, U+202A..E, U+2066..9) as \uXXXX so they cannot break a line or
// reorder what follows; with `backslash` also '\' (so an escape in the output is always one we
// made).
// Everything else, UTF-8 included, as is.
std::string escape_controls(std::string_view s, bool backslash = false);

// ---------------------------------------------------------------------------------------------
// Decoding

namespace detail {
// Incremental UTF-8 validation: where we are inside a multi-byte sequence.
struct utf8_state {
    unsigned need = 0;                       // continuation bytes still expected
    unsigned char lo = 0x80, hi = 0xBF;      // allowed range of the next continuation byte
};
}  // namespace detail

// Where a byte stream that ended inside a frame stopped (decoder::truncated()).
struct truncation {
    bool in_header = false;   // inside the header; else inside the payload
    std::uint64_t have = 0;   // header bytes, or payload units, received before the end
    std::uint64_t want = 0;   // the header size, or the announced length, in the same units
    length_unit unit = length_unit::bytes;  // of a payload's have/want (a header counts bytes)

    bool operator==(const truncation&) const = default;
};

// "after 7 of 28 payload bytes", "after 3 of 10 header bytes", "after 2 of 5 payload code
// points": the words decoder::error_message() uses for a truncation (after "connection closed ").
std::string to_string(const truncation& t);

// What decoder::next() found.
enum class decode_event {
    need_more,  // the input is used up; feed more bytes
    frame,      // a whole frame: payload() (whole-frame mode)
    begin,      // streaming mode: a frame starts; length() tells its size in header units
    data,       // streaming mode: a piece of the current frame's payload: payload()
    end,        // streaming mode: the current frame is complete
    error,      // error() and error_message() tell what; the decoder stays failed
};

enum class decode_mode {
    whole,      // hand out each payload whole (buffered when it spans reads)
    streaming,  // hand out payload pieces as they arrive; memory bounded by the caller's reads
};

// The decoder's check of a canonical header, outside the class so that a test can hold the
// 16-byte check to the scalar one (tests/unit/for_each_frame_test.cpp).
namespace detail {

// Whether the n bytes at p are all ' ', a word at a time (overlapping words: n <= 19).
[[gnu::always_inline]] inline bool all_spaces(const unsigned char* p, std::size_t n) noexcept {
    constexpr std::uint64_t spaces8 = 0x2020202020202020ull;
    constexpr std::uint32_t spaces4 = 0x20202020u;
    auto load8 = [](const unsigned char* q) { std::uint64_t w; std::memcpy(&w, q, 8); return w; };
    auto load4 = [](const unsigned char* q) { std::uint32_t w; std::memcpy(&w, q, 4); return w; };
    if (n >= 8) {
        for (std::size_t j = 0; j + 8 < n; j += 8) {
            if (load8(p + j) != spaces8) return false;
        }
        return load8(p + n - 8) == spaces8;
    }
    if (n >= 4) return load4(p) == spaces4 && load4(p + n - 4) == spaces4;
    for (std::size_t j = 0; j < n; ++j) {
        if (p[j] != ' ') return false;
    }
    return true;
}

#if defined(__SSE2__)
// canonical_length() of the usual 10-byte header, with 16 bytes readable at p. Which bytes
// are digits and which spaces is two masks from one 16-byte load; the digits run to the
// first byte that is not one, and the spaces from there to byte 9 (or there are ten
// digits); then the digits combine without a loop up to four of them (payloads under
// 10,000 bytes). Fewer instructions per frame than a digit loop and word compares, and no
// loop whose exit depends on the length (docs/bench.md, "A header read sixteen bytes at a
// time").
[[gnu::always_inline]] inline bool canonical_length_10(const unsigned char* p,
                                                       std::uint64_t max,
                                                       std::uint64_t& length) noexcept {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i d = _mm_sub_epi8(bytes, _mm_set1_epi8('0'));  // a digit: 0..9 unsigned
    const auto digits = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d)));
    const auto spaces = static_cast<unsigned>(
                            _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(' ')))) &
                        0x3ffu;
    const auto count = static_cast<unsigned>(__builtin_ctz(~digits | 0x400u));  // 0..10
    // At least one digit, and bytes count..9 all spaces: spaces holds no bit below count
    // (those bytes are digits), so it is bits count..9 exactly when this sum is bit 10.
    if (count == 0 || spaces + (1u << count) != 0x400u) return false;
    std::uint64_t value;
    switch (count) {
        case 1: value = p[0] - 48u; break;
        case 2: value = (p[0] - 48u) * 10u + (p[1] - 48u); break;
        case 3: value = (p[0] - 48u) * 100u + (p[1] - 48u) * 10u + (p[2] - 48u); break;
        case 4:
            value = (p[0] - 48u) * 1000u + (p[1] - 48u) * 100u + (p[2] - 48u) * 10u +
                    (p[3] - 48u);
            break;
        default:
            value = 0;
            for (unsigned i = 0; i < count; ++i) value = value * 10 + (p[i] - 48u);
    }
    if (value > max) return false;
    length = value;
    return true;
}
#endif

// The header as every encoder writes it — digits from the first byte, then spaces — read
// without the general parse's checks: at most 19 digits cannot overflow 64 bits. False for
// any other shape (leading spaces, tabs, errors) or a length above `max`, which the general
// parse then handles; else the length. `avail` is how many bytes from `p` may be read (at
// least h).
[[gnu::always_inline]] inline bool canonical_length(const unsigned char* p, std::size_t avail,
                                                    std::size_t h, std::uint64_t max,
                                                    std::uint64_t& length) noexcept {
#if defined(__SSE2__)
    if (h == default_header_size && avail >= 16) return canonical_length_10(p, max, length);
#endif
    (void)avail;
    if (h > 19) return false;
    std::uint64_t value = 0;
    std::size_t i = 0;
    for (unsigned d; i < h && (d = p[i] - unsigned{'0'}) < 10; ++i) value = value * 10 + d;
    if (i == 0 || value > max || !all_spaces(p + i, h - i)) return false;
    length = value;
    return true;
}

}  // namespace detail

// Sans-I/O frame decoder. Feed it any chunking of the byte stream:
//
//     std::span<const char> in{buf, n};
//     for (;;) {
//         auto ev = dec.next(in);
//         if (ev == decode_event::need_more) break;
//         if (ev == decode_event::error) { log(dec.error_message()); close(); break; }
//         deliver(dec.payload());
//     }
//
// next() consumes from the front of `in`. A payload view stays valid until the next call to
// next() and, when the frame lay whole in `in`, as long as the caller's bytes do: frames that
// arrive whole are views into the caller's buffer (no copy); only a frame that spans reads is
// gathered into the decoder's own buffer, which never holds more than one frame (bounded by
// max_message) and is released after a large one. After an error every call returns error
// again: a byte stream cannot be resynchronised, so close the connection.
class decoder {
public:
    explicit decoder(codec_options opts = {}, decode_mode mode = decode_mode::whole);

    // Inline: a small frame whose header and payload lie whole in `in` (frames read in bulk)
    // costs a few dozen instructions and no call; anything else goes to next_general(). Always
    // inlined, with the fast path's helpers: left to its own choice, g++ 12 called
    // try_whole_frame() for every frame from a loop in main(), and a 16-byte frame cost
    // 4.6-5.2 ns against 3.7-3.9 ns inlined (docs/bench.md, "Paired repeats").
    [[gnu::always_inline]] decode_event next(std::span<const char>& in) {
        if (fast_ready_ && try_whole_frame(in)) return decode_event::frame;
        return next_general(in);
    }

    // A loop over next() for a reader with little to do per frame: calls on_frame(payload)
    // for every frame in `in` and returns the first event that is not a frame — need_more once
    // `in` is used up, or error; in streaming mode begin, data or end, to handle as after
    // next() before calling again. The same frames as next() gives. The difference: a run of
    // whole frames lying in `in` is taken in a loop that keeps its place in registers, where
    // next() stores `in`, the payload, the length and the header for every frame and reloads
    // them for the next one (16-byte frames in session 22: 3.1 ns against 3.3 ns, and 3.8-4.1 ns
    // against 6.0-6.1 ns on a vCPU slowed by its neighbour, where the bench's raw-TCP ceiling
    // then parsed in 3.1 / 3.3 ns; docs/bench.md, "A ceiling that finds its fast path again").
    // While on_frame runs, use its argument: a view into `in` (valid as long as your bytes)
    // or, for a frame that spanned reads, into the decoder's buffer (valid until on_frame
    // returns); the decoder's own payload(), length() and header_bytes() may still describe
    // an earlier frame. When it returns, length() and header_bytes() are as a loop of next()
    // calls leaves them; payload() belongs to the last call, which found no frame: do not use
    // it. on_frame must not call into, assign or destroy this decoder; if it throws, the
    // exception propagates and `in` may still hold frames it was given.
    template <class OnFrame>
    decode_event for_each_frame(std::span<const char>& in, OnFrame&& on_frame) {
        for (;;) {
            if (fast_ready_ && in.data() != nullptr) take_whole_frames(in, on_frame);
            const decode_event ev = next_general(in);
            if (ev != decode_event::frame) return ev;
            on_frame(payload_);
        }
    }

    // Reading a large frame's payload straight into the decoder (whole mode, length in
    // bytes): after next() returned need_more in the middle of a payload, payload_space() is
    // the room for the rest of it — read into (a prefix of) it, then commit(n) the bytes read.
    // commit() returns frame once the payload is complete (payload() is then valid, as after
    // next()), else need_more. A frame that spans reads then costs no copy beyond the bytes
    // next() already took. payload_space() allocates the whole announced length (bounded by
    // max_message); it is empty between frames, in streaming or code-point mode, and after
    // an error. Mixing next() and payload_space()/commit() within a frame is allowed.
    std::span<char> payload_space();
    decode_event commit(std::size_t n);

    // The payload of the last frame/data event.
    std::string_view payload() const noexcept { return payload_; }
    // The length announced by the current (or last) header, in header units.
    std::uint64_t length() const noexcept { return length_; }

    // Call at end of stream: returns truncated_frame (and sets error_message(), e.g. "connection
    // closed after 7 of 28 payload bytes", and truncated()) when the stream stopped inside a
    // frame, else {}.
    std::error_code finish();

    // After finish() returned truncated_frame: where the stream stopped, as numbers (the same
    // ones error_message() spells out; to_string() gives its words). nullopt otherwise.
    std::optional<truncation> truncated() const noexcept { return truncation_; }

    // The header of the current (or last) frame exactly as received, options().header_size
    // bytes: valid from the frame's frame/begin event until the next header is complete
    // (through its data/end events), whether the payload came by next() or commit(). After a
    // header error, the offending header; after finish() found the stream ended inside a
    // header, the part of it received. Empty before any header. (Chat relays headers as sent.)
    std::string_view header_bytes() const noexcept { return {header_bytes_.data(), header_bytes_size_}; }

    std::error_code error() const noexcept { return error_; }
    // Human-readable reason, naming the offending header bytes escaped.
    const std::string& error_message() const noexcept { return error_message_; }

    // True between frames (nothing of a frame received yet).
    bool at_frame_boundary() const noexcept { return state_ == state::header && header_fill_ == 0; }

    const codec_options& options() const noexcept { return opts_; }
    // A gathering buffer larger than this is freed once its frame has been handed out (by
    // default 64 KiB), so an idle connection that once received a large message does not keep
    // its memory. A reader of one connection that receives large frames can keep up to
    // max_message instead: that saves an allocation, and the page faults of fresh memory, per
    // large frame.
    static constexpr std::size_t default_retained_capacity = 64 * 1024;
    void retain_capacity(std::size_t bytes) noexcept { retain_ = bytes; }
    // Bytes of memory the decoder holds for frames that span reads (0 between small frames).
    std::size_t buffered_capacity() const noexcept { return capacity_; }

private:
    enum class state { header, payload, failed };

    // Everything but the inline fast path; refreshes fast_ready_ on the way out.
    decode_event next_general(std::span<const char>& in);
    decode_event advance(std::span<const char>& in);
    // Whether next() may try try_whole_frame(): between frames, in whole mode with the length
    // in bytes, with no buffer to release and no end to report. One flag, kept by every
    // out-of-line function that changes those, so the fast path reads one byte, not five
    // fields; with fewer loads and stores per frame a 16-byte frame decoded in 3.0 ns
    // against 3.6 ns, and in 5.0 ns against 6.7 ns on a vCPU slowed by its neighbour
    // (docs/bench.md, "A ceiling that finds its fast path again").
    void update_fast_ready() noexcept {
        fast_ready_ = state_ == state::header && header_fill_ == 0 && fast_whole_ &&
                      !release_buffer_ && !pending_end_;
    }
    decode_event fail(errc e, std::string message);
    decode_event on_header_complete(const char* header);

    // Whole mode, length in bytes, between frames: takes a frame whose canonical header and
    // whole payload are in `in` as a view into it (nothing copied but the header). False,
    // with `in` untouched, for anything else.
    [[gnu::always_inline]] bool try_whole_frame(std::span<const char>& in) noexcept {
        const std::size_t h = opts_.header_size;
        // No bytes at null (an empty default span) said first: inlined at -O1 (the tsan
        // preset), g++ 12 otherwise saw a memcpy from null below (-Wnonnull), on a path that
        // the size check already closes.
        std::uint64_t length;
        if (in.data() == nullptr || in.size() < h ||
            !detail::canonical_length(reinterpret_cast<const unsigned char*>(in.data()), in.size(), h,
                              opts_.max_message, length) ||
            in.size() - h < length) {
            return false;
        }
        length_ = length;
        // A fixed-size copy when the bytes are there: a few moves instead of a memcpy call.
        if (in.size() >= max_header_size) {
            std::memcpy(header_bytes_.data(), in.data(), max_header_size);
        } else {
            std::memcpy(header_bytes_.data(), in.data(), h);
        }
        header_bytes_size_ = h;
        const auto n = static_cast<std::size_t>(length_);
        payload_ = {in.data() + h, n};
        in = in.subspan(h + n);
        return true;
    }

    // for_each_frame()'s run of whole frames (between frames, whole mode, length in bytes, `in`
    // not null): hands each to on_frame with its place in locals, then leaves `in`, the
    // payload, the length and the header as next() would have after the last one. The usual
    // 10-byte header gets a loop of its own, in which the header size is a constant and each
    // header is read 16 bytes at a time (a header that starts fewer than 16 bytes before the end
    // of `in` is left to next_general(), which reads it with the digit loop).
    template <class OnFrame>
    [[gnu::always_inline]] void take_whole_frames(std::span<const char>& in, OnFrame& on_frame) {
#if defined(__SSE2__)
        if (opts_.header_size == default_header_size) {
            take_whole_frames_of<true>(in, on_frame);
            return;
        }
#endif
        take_whole_frames_of<false>(in, on_frame);
    }
    // take_whole_frames() with 10-byte headers each read 16 bytes at a time by
    // canonical_length_10() when Sixteen, else with options().header_size and canonical_length().
    template <bool Sixteen, class OnFrame>
    [[gnu::always_inline]] void take_whole_frames_of(std::span<const char>& in, OnFrame& on_frame) {
        const std::size_t h = Sixteen ? default_header_size : opts_.header_size;
        const std::size_t readable = Sixteen ? 16 : h;
        const std::uint64_t max = opts_.max_message;
        const char* p = in.data();
        std::size_t n = in.size();
        const char* last = nullptr;  // the last frame's header; its payload ends at p
        for (std::uint64_t length;
             n >= readable &&
             header_length<Sixteen>(reinterpret_cast<const unsigned char*>(p), h, max, length) &&
             n - h >= length;) {
            const auto size = static_cast<std::size_t>(length);
            on_frame(std::string_view{p + h, size});
            last = p;
            p += h + size;
            n -= h + size;
        }
        if (last == nullptr) return;
        const auto last_size = static_cast<std::size_t>(p - last) - h;
        length_ = last_size;
        std::memcpy(header_bytes_.data(), last, h);
        header_bytes_size_ = h;
        payload_ = {last + h, last_size};
        in = {p, n};
    }
    template <bool Sixteen>
    [[gnu::always_inline]] static bool header_length(const unsigned char* p, std::size_t h,
                                                     std::uint64_t max,
                                                     std::uint64_t& length) noexcept {
#if defined(__SSE2__)
        if constexpr (Sixteen) return detail::canonical_length_10(p, max, length);
#endif
        return detail::canonical_length(p, h, h, max, length);
    }

    decode_event start_payload() noexcept;
    decode_event take_payload(std::span<const char>& in);
    // Whole mode: makes buffer_ hold at least `n` bytes, keeping the first fill_.
    void reserve_buffer(std::size_t n);
    // Code-point mode: how many of `n` bytes at `p` belong to the current frame (stops where
    // its last code point ends); -1 on invalid UTF-8.
    std::ptrdiff_t scan_code_points(const char* p, std::size_t n) noexcept;
    bool payload_complete() const noexcept;

    codec_options opts_;
    decode_mode mode_;
    bool fast_whole_ = false;  // whole mode, length in bytes: try_whole_frame() applies
    bool fast_ready_ = false;  // see update_fast_ready()
    state state_ = state::header;
    std::array<char, max_header_size> header_{};  // a header that spans reads, gathered
    std::size_t header_fill_ = 0;
    // The last complete header, copied (at most 20 bytes) because the fast path reads it in
    // place from the caller's bytes, which may be gone by the time header_bytes() is asked.
    std::array<char, max_header_size> header_bytes_{};
    std::size_t header_bytes_size_ = 0;
    std::optional<truncation> truncation_;
    std::uint64_t length_ = 0;           // announced length (header units)
    // Of the current frame, in the payload state only (start_payload() resets them; the fast
    // path, which never enters that state, leaves them as they were).
    std::uint64_t received_units_ = 0;   // bytes, or completed code points
    std::uint64_t received_bytes_ = 0;   // payload bytes received
    bool pending_end_ = false;           // streaming: report end before the next header
    detail::utf8_state utf8_;            // code-point mode: a sequence split across reads
    // A frame that spans reads (whole mode): fill_ bytes of it in buffer_, which holds
    // capacity_ bytes (uninitialised: payload_space() does not zero-fill what a read overwrites).
    std::unique_ptr<char[]> buffer_;
    std::size_t capacity_ = 0;
    std::size_t fill_ = 0;
    bool release_buffer_ = false;        // free buffer_ at the next call (it held a large frame)
    std::size_t retain_ = default_retained_capacity;
    std::string_view payload_;
    std::error_code error_;
    std::string error_message_;
};

}  // namespace framecast
