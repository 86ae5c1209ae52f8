// Typed errors of the framecast codec. They are std::error_code values of their own category,
// so they mix with Asio's and the system's error codes.
#pragma once

#include <string>
#include <system_error>

namespace framecast {

enum class errc {
    // Header: no digit at all (e.g. ten spaces).
    header_no_digits = 1,
    // Header: a '+' or '-' sign (Python's int() accepts one; we do not).
    header_sign,
    // Header: an '_' digit separator (Python's int() accepts "1_000"; we do not).
    header_underscore,
    // Header: white space between digits ("1 2").
    header_interior_space,
    // Header: a byte >= 0x80.
    header_non_ascii,
    // Header: any other byte that is neither a digit nor ASCII white space.
    header_invalid_char,
    // The announced length is above the configured maximum message size.
    message_too_large,
    // Encoding: the length does not fit in the header's digits.
    length_does_not_fit,
    // Code-point mode: the payload is not valid UTF-8.
    invalid_utf8,
    // The byte stream ended in the middle of a frame.
    truncated_frame,
    // A header size outside 1..20 was asked for.
    invalid_header_size,
};

// The category of framecast::errc; name() is "framecast".
const std::error_category& codec_category() noexcept;

std::error_code make_error_code(errc e) noexcept;

}  // namespace framecast

template <>
struct std::is_error_code_enum<framecast::errc> : std::true_type {};
