// The words of the opt-in request frames (@resume, @publish and their answers), shared by the
// server's rooms and the clients so both sides read them by the same rule (docs/resume.md).
#pragma once

#include <charconv>
#include <cstdint>
#include <string_view>
#include <system_error>
#include <vector>

namespace framecast::io {

// Nonces, epochs and publisher ids: 1 to 64 characters of [A-Za-z0-9_-].
inline bool is_protocol_token(std::string_view s) noexcept {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

// Offsets, counts and sequence numbers: 1 to 20 decimal digits, the whole word, fitting 64 bits.
inline bool parse_protocol_u64(std::string_view s, std::uint64_t& v) noexcept {
    if (s.empty() || s.size() > 20) return false;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && end == s.data() + s.size();
}

// The words of an answer, split on single spaces; at most 8 (the rest stays in the last).
inline std::vector<std::string_view> protocol_words(std::string_view s) {
    std::vector<std::string_view> out;
    while (out.size() < 8) {
        const auto sp = s.find(' ');
        out.push_back(s.substr(0, sp));
        if (sp == std::string_view::npos) break;
        s.remove_prefix(sp + 1);
    }
    return out;
}

}  // namespace framecast::io
