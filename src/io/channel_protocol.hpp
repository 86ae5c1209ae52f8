// The channel protocol's words, without I/O: channel names and patterns (dot-separated tokens,
// `*` one token, `>` the rest, NATS semantics), the limits on them, and the command frames a
// client sends (`SUB pattern`, `UNSUB pattern`, `PUB channel` + one payload frame).
// docs/channels.md is the specification; this file is its one implementation, fuzzed by
// tests/fuzz/channel_fuzz.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "framecast/io/channel_limits.hpp"

namespace framecast::io {

// The next dot-separated token of a name or pattern, consumed from `rest` (the whole of it when
// there is no dot left).
inline std::string_view next_token(std::string_view& rest) noexcept {
    const auto dot = rest.find('.');
    auto token = rest.substr(0, dot);
    rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
    return token;
}

// The notice channels (server to client only; a first token starting with '$' is reserved).
inline constexpr std::string_view notice_ok = "$sys.ok";
inline constexpr std::string_view notice_error = "$sys.error";
inline constexpr std::string_view notice_pong = "$sys.pong";
// Resume (serve --channels --resume, docs/resume.md#channels): the answer to a RESUME of a
// channel, and the position pair in front of every delivery to a client that sent RESUME.
inline constexpr std::string_view notice_resumed = "$sys.resumed";
inline constexpr std::string_view notice_position = "$sys.pos";

// Error codes: the first word of a `$sys.error` notice's payload.
enum class channel_error {
    none,
    bad_command,          // not SUB / UNSUB / PUB followed by one space and an argument
    bad_pattern,          // SUB / UNSUB argument is not a valid pattern
    bad_channel,          // PUB argument is not a valid channel (wildcards, empty tokens, ...)
    reserved,             // the first token starts with '$'
    name_too_long,        // more than max_name bytes
    too_many_tokens,      // more than max_tokens tokens
    too_many_subscriptions,  // the client already holds max_subscriptions patterns
    too_many_channels,    // the server already holds max_channels distinct patterns
    not_subscribed,       // UNSUB of a pattern this client does not hold
    permission_denied,    // the client's token does not allow this SUB / PUB (--auth)
    auth_refused,         // AUTH: the new token is not valid (the old one still holds)
    bad_position,         // RESUME: malformed, or an offset ahead of the channel
};
std::string_view error_code_text(channel_error e) noexcept;  // e.g. "bad-pattern"

enum class verb { sub, unsub, pub, ping, auth, resume };

struct command {
    verb what = verb::sub;
    std::string_view arg;     // a view into the frame (PING: optional, may be empty)
    channel_error error = channel_error::none;
    std::string detail;       // when error: a sentence naming what is wrong
};

// Splits a command frame into its verb and argument (the argument is not checked here).
command parse_command(std::string_view frame);

// Checks a name: a pattern when `pattern` (wildcards allowed), else a channel to publish to.
// Returns none, or the error with `detail` set to a sentence naming what is wrong.
channel_error check_name(std::string_view name, bool pattern, const channel_limits& limits,
                         std::string& detail);

// Whether `channel` (no wildcards) matches `pattern`, by the rules above (the trie's reference).
bool pattern_matches(std::string_view pattern, std::string_view channel) noexcept;

// Whether a pattern has wildcards, i.e. matches more than one channel.
bool has_wildcards(std::string_view pattern) noexcept;

}  // namespace framecast::io
