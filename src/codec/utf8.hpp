// One step of incremental UTF-8 validation, shared by count_code_points() and the decoder.
#pragma once

#include "framecast/codec.hpp"

namespace framecast::detail {

enum class utf8_step { more, code_point, invalid };

// Feeds one byte; code_point when it ends a code point, more when a sequence goes on.
inline utf8_step utf8_feed(utf8_state& st, unsigned char c) noexcept {
    if (st.need == 0) {
        if (c < 0x80) return utf8_step::code_point;
        st.lo = 0x80;
        st.hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            st.need = 1;
        } else if (c == 0xE0) {
            st.need = 2;
            st.lo = 0xA0;  // no overlong 3-byte forms
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            st.need = 2;
        } else if (c == 0xED) {
            st.need = 2;
            st.hi = 0x9F;  // no UTF-16 surrogates
        } else if (c == 0xF0) {
            st.need = 3;
            st.lo = 0x90;  // no overlong 4-byte forms
        } else if (c >= 0xF1 && c <= 0xF3) {
            st.need = 3;
        } else if (c == 0xF4) {
            st.need = 3;
            st.hi = 0x8F;  // nothing above U+10FFFF
        } else {
            return utf8_step::invalid;
        }
        return utf8_step::more;
    }
    if (c < st.lo || c > st.hi) return utf8_step::invalid;
    st.lo = 0x80;
    st.hi = 0xBF;
    return --st.need == 0 ? utf8_step::code_point : utf8_step::more;
}

}  // namespace framecast::detail
