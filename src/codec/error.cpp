#include "framecast/error.hpp"

namespace framecast {
namespace {

class codec_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "framecast"; }

    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
            case errc::header_no_digits: return "frame header holds no digits";
            case errc::header_sign: return "frame header holds a sign";
            case errc::header_underscore: return "frame header holds an underscore";
            case errc::header_interior_space: return "frame header has white space between digits";
            case errc::header_non_ascii: return "frame header holds a non-ASCII byte";
            case errc::header_invalid_char: return "frame header holds an invalid character";
            case errc::message_too_large: return "message larger than the maximum";
            case errc::length_does_not_fit: return "message length does not fit in the header";
            case errc::invalid_utf8: return "payload is not valid UTF-8";
            case errc::truncated_frame: return "stream ended in the middle of a frame";
            case errc::invalid_header_size: return "header size must be 1 to 20 bytes";
        }
        return "unknown framecast error";
    }
};

}  // namespace

const std::error_category& codec_category() noexcept {
    static const codec_category_impl instance;
    return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), codec_category()}; }

}  // namespace framecast
