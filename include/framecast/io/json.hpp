// Text for JSON documents: one escaper for everything framecast writes as JSON (connect's
// `--output json`, the JSON log format). Header-only, Asio-free.
#pragma once

#include <string_view>

namespace framecast::io {

// Appends `s` to `out` as the inside of a JSON string (RFC 8259): '"' and '\' escaped, control
// characters as \n \r \t \b \f or \u00XX, and the code points a line-oriented reader takes
// for a line end (U+0085, U+2028, U+2029: Python's splitlines() would cut the record) as
// \u0085 \u2028 \u2029; every other byte (UTF-8 included) as is. The caller
// checks that `s` is UTF-8 when the document must be. `Out` is any byte buffer with
// push_back(char) and append(const char*, const char*) (std::string, fmt::memory_buffer).
template <class Out>
void append_json_string(Out& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    const char* run = s.data();  // the first byte not yet copied
    const char* const end = s.data() + s.size();
    for (const char* p = run; p != end; ++p) {
        const auto c = static_cast<unsigned char>(*p);
        if (c == 0xc2 && end - p >= 2 && static_cast<unsigned char>(p[1]) == 0x85) {
            out.append(run, p);
            static constexpr char nel[] = "\\u0085";
            out.append(nel, nel + 6);
            run = ++p + 1;
            continue;
        }
        if (c == 0xe2 && end - p >= 3 && static_cast<unsigned char>(p[1]) == 0x80 &&
            (static_cast<unsigned char>(p[2]) & 0xfe) == 0xa8) {
            out.append(run, p);
            const char esc[] = {'\\', 'u', '2', '0', '2', p[2] == '\xa8' ? '8' : '9'};
            out.append(esc, esc + sizeof esc);
            p += 2;
            run = p + 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out.append(run, p);
        run = p + 1;
        char short_form = 0;
        switch (c) {
            case '"': short_form = '"'; break;
            case '\\': short_form = '\\'; break;
            case '\n': short_form = 'n'; break;
            case '\r': short_form = 'r'; break;
            case '\t': short_form = 't'; break;
            case '\b': short_form = 'b'; break;
            case '\f': short_form = 'f'; break;
            default: break;
        }
        if (short_form != 0) {
            const char esc[] = {'\\', short_form};
            out.append(esc, esc + sizeof esc);
        } else {
            const char esc[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            out.append(esc, esc + sizeof esc);
        }
    }
    out.append(run, end);
}

}  // namespace framecast::io
