// A deliberately simple reference decoder for differential fuzzing: the whole stream in memory,
// parsed left to right with string operations, sharing no code with the real decoder.
#pragma once

#include <framecast/codec.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace framecast::fuzz {

struct reference_result {
    std::vector<std::string> frames;
    std::error_code error;
};

// Unicode Table 3-7 (well-formed UTF-8): is byte `b` allowed at position `k` (0-based) of a
// sequence whose first byte is `lead`? Returns the sequence length for k == 0 (0: invalid lead).
inline int utf8_len(unsigned char lead) {
    if (lead <= 0x7F) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) return 2;
    if (lead >= 0xE0 && lead <= 0xEF) return 3;
    if (lead >= 0xF0 && lead <= 0xF4) return 4;
    return 0;
}
inline bool utf8_ok(unsigned char lead, int k, unsigned char b) {
    if (k == 1) {
        if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
        if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
        if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
        if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    }
    return b >= 0x80 && b <= 0xBF;
}

inline std::error_code classify_header(const std::string& h, std::uint64_t max, std::uint64_t& len) {
    const char* ws = " \t\n\v\f\r";
    auto first = h.find_first_not_of(ws);
    if (first == std::string::npos) return errc::header_no_digits;
    auto last = h.find_last_not_of(ws);
    std::string core = h.substr(first, last - first + 1);
    auto bad = core.find_first_not_of("0123456789");
    if (bad != std::string::npos) {
        std::size_t at = bad;
        if (std::string(ws).find(core[at]) != std::string::npos) {
            at = core.find_first_not_of(ws, at);
            if (core[at] >= '0' && core[at] <= '9') return errc::header_interior_space;
        }
        unsigned char c = static_cast<unsigned char>(core[at]);
        if (c == '+' || c == '-') return errc::header_sign;
        if (c == '_') return errc::header_underscore;
        if (c >= 0x80) return errc::header_non_ascii;
        return errc::header_invalid_char;
    }
    auto nz = core.find_first_not_of('0');
    std::string digits = nz == std::string::npos ? "0" : core.substr(nz);
    const std::string u64max = "18446744073709551615";
    if (digits.size() > u64max.size() || (digits.size() == u64max.size() && digits > u64max)) {
        return errc::message_too_large;
    }
    len = std::stoull(digits);
    if (len > max) return errc::message_too_large;
    return {};
}

inline reference_result reference_decode(std::string_view wire, const codec_options& opts) {
    reference_result r;
    const std::size_t h = opts.header_size;
    if (h < 1 || h > 20) {
        r.error = errc::invalid_header_size;
        return r;
    }
    std::size_t pos = 0;
    while (pos < wire.size()) {
        if (wire.size() - pos < h) {
            r.error = errc::truncated_frame;
            return r;
        }
        std::uint64_t len = 0;
        if ((r.error = classify_header(std::string(wire.substr(pos, h)), opts.max_message, len))) return r;
        pos += h;
        if (opts.unit == length_unit::bytes) {
            if (wire.size() - pos < len) {
                r.error = errc::truncated_frame;
                return r;
            }
            r.frames.emplace_back(wire.substr(pos, len));
            pos += len;
            continue;
        }
        // Code points: walk sequence by sequence, byte by byte.
        std::size_t start = pos, b = 0;
        for (std::uint64_t cp = 0; cp < len; ++cp) {
            int n = 0;
            unsigned char lead = 0;
            for (int k = 0; k == 0 || k < n; ++k, ++b) {
                if (b >= opts.max_message && start + b < wire.size()) {
                    r.error = errc::message_too_large;
                    return r;
                }
                if (start + b >= wire.size()) {
                    r.error = errc::truncated_frame;
                    return r;
                }
                auto c = static_cast<unsigned char>(wire[start + b]);
                if (k == 0) {
                    lead = c;
                    n = utf8_len(c);
                    if (n == 0) {
                        r.error = errc::invalid_utf8;
                        return r;
                    }
                } else if (!utf8_ok(lead, k, c)) {
                    r.error = errc::invalid_utf8;
                    return r;
                }
            }
        }
        r.frames.emplace_back(wire.substr(start, b));
        pos = start + b;
    }
    return r;
}

}  // namespace framecast::fuzz
