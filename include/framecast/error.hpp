// Typed errors of the framecast codec, and the exit codes that tell them apart. The errors are
// std::error_code values of their own category, so they mix with Asio's and the system's.
//
// FRAMECAST_ERRC_MAP below is the only place the errors are listed: the enum, the category's
// messages, name(), errc_count, all_errc and the exit codes are all generated from it, so they
// cannot drift apart (they did, when each kept its own copy).
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <system_error>

namespace framecast {

// Exit status of a framecast program, so that scripts can tell failures apart. The values are
// documented (`framecast --help`) and stable.
enum class exit_code : int {
    ok = 0,
    failure = 1,            // anything not listed below
    usage = 2,              // bad command line or configuration
    connect_failed = 3,     // refused, unreachable, name not resolved
    malformed_header = 4,   // the peer sent a header that is not a length
    message_too_large = 5,  // a length above the maximum, or one the header cannot hold
    truncated = 6,          // the peer closed in the middle of a message
    timed_out = 7,          // a deadline elapsed
    address_in_use = 8,     // the listen address is taken
    invalid_utf8 = 9,       // code-point length mode: a payload is not valid UTF-8
    tls_failed = 10,        // TLS: the server's certificate was not verified, or the handshake failed
    auth_refused = 11,      // the server refused the token (--token) or the client certificate
    gap = 12,               // resume --no-gap: messages were lost (outside the window, new epoch)
};

// X(name, message, exit_code) for every framecast error, in value order (the first is 1; 0 is
// success in a std::error_code). Append new errors at the end: the values are ABI, and the
// names are metric label values. The exit code names an exit_code enumerator.
// (/* */ comments: a // comment would swallow the line continuation.)
#define FRAMECAST_ERRC_MAP(X)                                                                    \
    /* Header: no digit at all (e.g. ten spaces). */                                             \
    X(header_no_digits, "frame header holds no digits", malformed_header)                        \
    /* Header: a '+' or '-' sign (Python's int() accepts one; we do not). */                     \
    X(header_sign, "frame header holds a sign", malformed_header)                                \
    /* Header: an '_' digit separator (Python's int() accepts "1_000"; we do not). */            \
    X(header_underscore, "frame header holds an underscore", malformed_header)                   \
    /* Header: white space between digits ("1 2"). */                                            \
    X(header_interior_space, "frame header has white space between digits", malformed_header)   \
    /* Header: a byte >= 0x80. */                                                                \
    X(header_non_ascii, "frame header holds a non-ASCII byte", malformed_header)                 \
    /* Header: any other byte that is neither a digit nor ASCII white space. */                  \
    X(header_invalid_char, "frame header holds an invalid character", malformed_header)          \
    /* The announced length is above the configured maximum message size. */                     \
    X(message_too_large, "message larger than the maximum", message_too_large)                   \
    /* Encoding: the length does not fit in the header's digits (too large for the header). */   \
    X(length_does_not_fit, "message length does not fit in the header", message_too_large)       \
    /* Code-point mode: the payload is not valid UTF-8. */                                       \
    X(invalid_utf8, "payload is not valid UTF-8", invalid_utf8)                                  \
    /* The byte stream ended in the middle of a frame. */                                        \
    X(truncated_frame, "stream ended in the middle of a frame", truncated)                       \
    /* A header size outside 1..20 was asked for: a caller's configuration, hence usage. */      \
    X(invalid_header_size, "header size must be 1 to 20 bytes", usage)                           \
    /* TLS: the peer's certificate failed verification (expired, unknown CA, name mismatch). */  \
    X(tls_verify_failed, "TLS certificate verification failed", tls_failed)                      \
    /* TLS: the handshake failed for another reason (protocol version, plaintext peer). */      \
    X(tls_handshake_failed, "TLS handshake failed", tls_failed)                                  \
    /* Auth: the server refused the client's token, or did not answer it. */                    \
    X(auth_refused, "the server refused the token", auth_refused)                                \
    /* Resume: messages were lost (outside the server's window, or a new epoch); --no-gap. */   \
    X(resume_gap, "messages were lost (outside the resume window, or a new epoch)", gap)

namespace detail {
// 0-based positions in the map; errc values are these plus one.
#define FRAMECAST_ERRC_INDEX_(name, message, exit) name,
enum class errc_index { FRAMECAST_ERRC_MAP(FRAMECAST_ERRC_INDEX_) };
#undef FRAMECAST_ERRC_INDEX_
}  // namespace detail

enum class errc {
#define FRAMECAST_ERRC_ENUM_(name, message, exit) \
    name = static_cast<int>(detail::errc_index::name) + 1,
    FRAMECAST_ERRC_MAP(FRAMECAST_ERRC_ENUM_)
#undef FRAMECAST_ERRC_ENUM_
};

// How many errc values there are; they are exactly 1..errc_count, so an array of
// errc_count + 1 counters indexed by value (index 0 unused) has a slot for each.
#define FRAMECAST_ERRC_COUNT_(name, message, exit) +1
inline constexpr std::size_t errc_count = 0 FRAMECAST_ERRC_MAP(FRAMECAST_ERRC_COUNT_);
#undef FRAMECAST_ERRC_COUNT_

// Every errc, in value order (for iterating: metrics, tests).
#define FRAMECAST_ERRC_LIST_(name, message, exit) errc::name,
inline constexpr std::array<errc, errc_count> all_errc{FRAMECAST_ERRC_MAP(FRAMECAST_ERRC_LIST_)};
#undef FRAMECAST_ERRC_LIST_

// The enumerator's identifier ("header_sign"), e.g. for a metric label; "unknown" for a value
// that is not an errc.
constexpr const char* name(errc e) noexcept {
    switch (e) {
#define FRAMECAST_ERRC_NAME_(name, message, exit) \
    case errc::name: return #name;
        FRAMECAST_ERRC_MAP(FRAMECAST_ERRC_NAME_)
#undef FRAMECAST_ERRC_NAME_
    }
    return "unknown";
}

// The exit code the map gives `e`; exit_code::failure for a value that is not an errc.
constexpr exit_code exit_code_for(errc e) noexcept {
    switch (e) {
#define FRAMECAST_ERRC_EXIT_(name, message, exit) \
    case errc::name: return exit_code::exit;
        FRAMECAST_ERRC_MAP(FRAMECAST_ERRC_EXIT_)
#undef FRAMECAST_ERRC_EXIT_
    }
    return exit_code::failure;
}

// The exit code that tells scripts what `ec` was: ok for no error; a framecast error's code
// from the map; timed_out and address_in_use for errors equal to those std::errc conditions
// (the system and generic categories; standalone Asio's own "asio.system" category is not,
// so an Asio caller checks asio::error::timed_out/address_in_use first); failure for anything
// else. Whether an error means "connect failed" depends on where it happened (a refused
// connection mid-stream is not one), so callers map their connect step's errors themselves.
exit_code exit_code_for(std::error_code ec) noexcept;

// The category of framecast::errc; name() is "framecast", message() the map's message.
const std::error_category& codec_category() noexcept;

// A std::error_code of codec_category() holding `e`.
std::error_code make_error_code(errc e) noexcept;

}  // namespace framecast

template <>
struct std::is_error_code_enum<framecast::errc> : std::true_type {};
