#include <charconv>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "framecast/codec.hpp"
#include "utf8.hpp"

namespace framecast {

std::error_code encode_header(std::uint64_t length, frame_header& out,
                              std::size_t header_size) noexcept {
    if (header_size < min_header_size || header_size > max_header_size) {
        return errc::invalid_header_size;
    }
    auto* first = out.bytes_.data();
    auto [end, ec] = std::to_chars(first, first + header_size, length);
    if (ec != std::errc{}) return errc::length_does_not_fit;
    for (auto* p = end; p != first + header_size; ++p) *p = ' ';
    out.size_ = header_size;
    return {};
}

std::error_code encode_header(std::string_view payload, frame_header& out,
                              const codec_options& opts) noexcept {
    std::uint64_t length = payload.size();
    if (opts.unit == length_unit::code_points) {
        auto n = count_code_points(payload);
        if (!n) return errc::invalid_utf8;
        length = *n;
    }
    return encode_header(length, out, opts.header_size);
}

namespace {

// Frames up to this size are built on the stack and appended with one call: a batch of small
// messages costs one string append (capacity check, copy) per message, not two plus a reserve.
constexpr std::size_t small_frame_payload = 256;

}  // namespace

std::error_code append_frame(std::string& out, std::string_view payload,
                             const codec_options& opts) {
    if (payload.size() <= small_frame_payload) {
        // Built on the stack by write_frame and appended once: one capacity check per frame.
        char frame[max_header_size + small_frame_payload];
        std::error_code ec;
        const std::size_t n = write_frame(frame, payload, ec, opts);
        if (n == 0) return ec;
        out.append(frame, n);
        return {};
    }
    frame_header h;
    if (auto ec = encode_header(payload, h, opts)) return ec;
    out.reserve(out.size() + h.size() + payload.size());
    out.append(h.view());
    out.append(payload);
    return {};
}

namespace detail {

// Out of line even here (append_frame inlines write_frame), so the fast path stays a leaf.
[[gnu::noinline]] std::size_t write_frame_general(char* out, std::string_view payload,
                                                  std::error_code& ec,
                                                  const codec_options& opts) noexcept {
    frame_header h;
    if (auto e = encode_header(payload, h, opts)) {
        ec = e;
        return 0;
    }
    std::memcpy(out, h.data(), h.size());
    if (!payload.empty()) std::memcpy(out + h.size(), payload.data(), payload.size());
    return h.size() + payload.size();
}

}  // namespace detail

std::string encode_frame(std::string_view payload, const codec_options& opts) {
    std::string out;
    if (auto ec = append_frame(out, payload, opts)) throw std::system_error(ec);
    return out;
}

std::optional<std::size_t> count_code_points(std::string_view s) noexcept {
    detail::utf8_state st;
    std::size_t n = 0;
    for (char ch : s) {
        switch (detail::utf8_feed(st, static_cast<unsigned char>(ch))) {
            case detail::utf8_step::code_point: ++n; break;
            case detail::utf8_step::more: break;
            case detail::utf8_step::invalid: return std::nullopt;
        }
    }
    if (st.need != 0) return std::nullopt;
    return n;
}

bool has_non_ascii(std::string_view s) noexcept {
    // 16-byte lanes (SSE2 on any x86-64, NEON on ARM), four at a time so the loads do not wait
    // on one chain of ORs, in blocks with no early exit inside.
    using lane = std::uint64_t __attribute__((vector_size(16)));
    constexpr std::uint64_t high = 0x8080808080808080ull;
    constexpr std::size_t block = 4096;
    const char* p = s.data();
    std::size_t n = s.size();
    auto load = [](const char* q) {
        lane v;
        std::memcpy(&v, q, sizeof v);
        return v;
    };
    auto any_high = [&](lane v) { return ((v[0] | v[1]) & high) != 0; };
    for (; n >= block; p += block, n -= block) {
        lane a{}, b{}, c{}, d{};
        for (std::size_t i = 0; i < block; i += 64) {
            a |= load(p + i);
            b |= load(p + i + 16);
            c |= load(p + i + 32);
            d |= load(p + i + 48);
        }
        if (any_high(a | b | c | d)) return true;
    }
    lane acc{};
    for (; n >= 16; p += 16, n -= 16) acc |= load(p);
    if (n >= 8) {  // the last 8-15 bytes: two overlapping words
        std::uint64_t x, y;
        std::memcpy(&x, p, 8);
        std::memcpy(&y, p + n - 8, 8);
        return any_high(acc) || ((x | y) & high) != 0;
    }
    std::uint64_t tail = 0;
    for (; n > 0; ++p, --n) tail |= static_cast<unsigned char>(*p);
    return any_high(acc) || (tail & high) != 0;
}

std::string escape_bytes(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "b'";
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '\\': out += "\\\\"; break;
            case '\'': out += "\\'"; break;
            case '\t': out += "\\t"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            default:
                if (c >= 0x20 && c < 0x7f) {
                    out += ch;
                } else {
                    out += "\\x";
                    out += hex[c >> 4];
                    out += hex[c & 0xf];
                }
        }
    }
    out += '\'';
    return out;
}

namespace {

// Length of the UTF-8 sequence at `p` (of `n` bytes) when it encodes a code point that can
// move the cursor, break a line or reorder text: C1 controls, U+061C, U+200E/F, U+2028/9,
// U+202A..E, U+2066..9; else 0. Sets `cp`.
std::size_t dangerous_sequence(const unsigned char* p, std::size_t n, unsigned& cp) noexcept {
    if (n >= 2 && p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
        cp = p[1];
        return 2;
    }
    if (n >= 2 && p[0] == 0xd8 && p[1] == 0x9c) {
        cp = 0x061c;
        return 2;
    }
    if (n >= 3 && p[0] == 0xe2 && (p[1] == 0x80 || p[1] == 0x81)) {
        cp = 0x2000 + ((p[1] & 0x3fu) << 6) + (p[2] & 0x3fu);
        const bool bad = cp == 0x200e || cp == 0x200f || cp == 0x2028 || cp == 0x2029 ||
                         (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
        return bad ? 3 : 0;
    }
    return 0;
}

}  // namespace

std::string escape_controls(std::string_view s, bool backslash) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (std::size_t i = 0; i < s.size(); ++i) {
        const unsigned char c = p[i];
        unsigned cp = 0;
        if (c < 0x20 || c == 0x7f || (backslash && c == '\\')) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        } else if (const auto len = dangerous_sequence(p + i, s.size() - i, cp); len != 0) {
            out += "\\u";
            for (int shift = 12; shift >= 0; shift -= 4) out += hex[(cp >> shift) & 0xf];
            i += len - 1;
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

}  // namespace framecast
