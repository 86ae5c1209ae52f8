#include "names.hpp"

#include <memory>

#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/uspoof.h>
#include <unicode/utf8.h>

namespace framecast::io {

namespace {

std::string code_point_text(UChar32 c) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(c));
    return buf;
}

// Characters that can hide, reorder or break what is shown around them.
const char* invisible_kind(UChar32 c) {
    switch (u_charType(c)) {
        case U_CONTROL_CHAR: return "a control character";
        case U_FORMAT_CHAR: return "a format character (invisible or bidirectional)";
        case U_LINE_SEPARATOR: return "a line separator";
        case U_PARAGRAPH_SEPARATOR: return "a paragraph separator";
        default: return nullptr;
    }
}

struct spoof_deleter {
    void operator()(USpoofChecker* s) const noexcept { uspoof_close(s); }
};

// One checker for the process: uspoof_getSkeleton is thread-safe on a checker not modified.
USpoofChecker* checker() {
    static std::unique_ptr<USpoofChecker, spoof_deleter> sc = [] {
        UErrorCode status = U_ZERO_ERROR;
        std::unique_ptr<USpoofChecker, spoof_deleter> p(uspoof_open(&status));
        if (U_FAILURE(status)) p.reset();
        return p;
    }();
    return sc.get();
}

}  // namespace

std::string name_problem(std::string_view name) {
    const auto* s = reinterpret_cast<const uint8_t*>(name.data());
    const auto n = static_cast<int32_t>(name.size());
    UChar32 first = -1, last = -1;
    for (int32_t i = 0; i < n;) {
        UChar32 c;
        U8_NEXT(s, i, n, c);
        if (c < 0) return "not valid UTF-8";
        if (const char* kind = invisible_kind(c)) {
            return std::string("contains ") + kind + " (" + code_point_text(c) + ")";
        }
        if (first < 0) first = c;
        last = c;
    }
    if (first >= 0 && (u_isUWhiteSpace(first) || u_isUWhiteSpace(last))) {
        return "begins or ends with white space";
    }
    if (name.find(" > ") != std::string_view::npos) {
        return "contains \" > \" (it would read as a name and a message)";
    }
    return {};
}

std::string name_skeleton(std::string_view name) {
    icu::UnicodeString folded = icu::UnicodeString::fromUTF8(
        icu::StringPiece(name.data(), static_cast<int32_t>(name.size())));
    folded.foldCase();
    std::string utf8;
    folded.toUTF8String(utf8);
    USpoofChecker* sc = checker();
    if (sc == nullptr) return utf8;
    UErrorCode status = U_ZERO_ERROR;
    std::string out(utf8.size() * 3 + 16, '\0');
    int32_t len = uspoof_getSkeletonUTF8(sc, 0, utf8.data(), static_cast<int32_t>(utf8.size()),
                                         out.data(), static_cast<int32_t>(out.size()), &status);
    if (status == U_BUFFER_OVERFLOW_ERROR) {
        status = U_ZERO_ERROR;
        out.assign(static_cast<std::size_t>(len) + 1, '\0');
        len = uspoof_getSkeletonUTF8(sc, 0, utf8.data(), static_cast<int32_t>(utf8.size()),
                                     out.data(), static_cast<int32_t>(out.size()), &status);
    }
    if (U_FAILURE(status)) return utf8;
    out.resize(static_cast<std::size_t>(len));
    return out;
}

}  // namespace framecast::io
