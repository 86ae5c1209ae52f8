#include "channel_protocol.hpp"

#include "framecast/codec.hpp"

namespace framecast::io {

namespace {

// Printable ASCII other than space, or UTF-8 beyond ASCII (checked whole by the caller).
bool allowed_byte(unsigned char c) noexcept { return (c > 0x20 && c < 0x7f) || c >= 0x80; }

std::string quoted(std::string_view s) { return "'" + escape_controls(s, true) + "'"; }

}  // namespace

std::string_view error_code_text(channel_error e) noexcept {
    switch (e) {
        case channel_error::none: return "ok";
        case channel_error::bad_command: return "bad-command";
        case channel_error::bad_pattern: return "bad-pattern";
        case channel_error::bad_channel: return "bad-channel";
        case channel_error::reserved: return "reserved";
        case channel_error::name_too_long: return "name-too-long";
        case channel_error::too_many_tokens: return "too-many-tokens";
        case channel_error::too_many_subscriptions: return "too-many-subscriptions";
        case channel_error::too_many_channels: return "too-many-channels";
        case channel_error::not_subscribed: return "not-subscribed";
        case channel_error::permission_denied: return "permission-denied";
        case channel_error::auth_refused: return "auth-refused";
        case channel_error::bad_position: return "bad-position";
    }
    return "unknown";
}

command parse_command(std::string_view frame) {
    command c;
    const auto space = frame.find(' ');
    const auto word = frame.substr(0, space);
    if (word == "SUB") {
        c.what = verb::sub;
    } else if (word == "UNSUB") {
        c.what = verb::unsub;
    } else if (word == "PUB") {
        c.what = verb::pub;
    } else if (word == "AUTH") {
        c.what = verb::auth;  // a fresh token (--auth): checked by the room
    } else if (word == "RESUME") {
        // Bare: positions on (answered with the epoch); "RESUME channel EPOCH LAST": replay.
        c.what = verb::resume;
        if (space != std::string_view::npos) c.arg = frame.substr(space + 1);
        return c;
    } else if (word == "PING") {
        // Answered in order with `$sys.pong` and the same text: a client knows every frame it
        // sent before has been handled.
        c.what = verb::ping;
        if (space != std::string_view::npos) c.arg = frame.substr(space + 1);
        return c;
    } else {
        c.error = channel_error::bad_command;
        c.detail = frame.empty() ? "empty command frame (expected SUB, UNSUB, PUB, PING or AUTH)"
                                 : "unknown command " + quoted(word.substr(0, 32)) +
                                       " (expected SUB, UNSUB, PUB, PING or AUTH, upper case)";
        return c;
    }
    if (space == std::string_view::npos || space + 1 == frame.size()) {
        c.error = channel_error::bad_command;
        c.detail = std::string(word) + " needs an argument after one space";
        return c;
    }
    c.arg = frame.substr(space + 1);
    return c;
}

channel_error check_name(std::string_view name, bool pattern, const channel_limits& limits,
                         std::string& detail) {
    const auto bad = pattern ? channel_error::bad_pattern : channel_error::bad_channel;
    const char* what = pattern ? "pattern " : "channel ";
    if (name.size() > limits.max_name) {
        detail = std::string(what) + std::to_string(name.size()) + " bytes long, more than " +
                 std::to_string(limits.max_name) + " (max name)";
        return channel_error::name_too_long;
    }
    if (!count_code_points(name)) {
        detail = std::string(what) + escape_bytes(name) + " is not valid UTF-8";
        return bad;
    }
    if (name.starts_with('$')) {
        detail = std::string(what) + quoted(name) + ": names starting with '$' are the server's";
        return channel_error::reserved;
    }
    std::size_t tokens = 0;
    std::string_view rest = name;
    bool more = true;
    while (more) {
        more = rest.find('.') != std::string_view::npos;
        const auto token = next_token(rest);
        ++tokens;
        if (token.empty()) {
            detail = std::string(what) + quoted(name) + " has an empty token (tokens are "
                     "separated by single dots, none at either end)";
            return bad;
        }
        for (unsigned char c : token) {
            if (!allowed_byte(c)) {
                detail = std::string(what) + quoted(name) + " has a space or control byte";
                return bad;
            }
        }
        const bool star = token == "*", rest_wc = token == ">";
        if ((star || rest_wc) && !pattern) {
            detail = "channel " + quoted(name) + " has a wildcard; publish to a concrete channel";
            return bad;
        }
        if (rest_wc && more) {
            detail = "pattern " + quoted(name) + ": '>' may only be the last token";
            return bad;
        }
        if (!star && !rest_wc &&
            token.find_first_of("*>") != std::string_view::npos) {
            detail = std::string(what) + quoted(name) +
                     ": '*' and '>' are wildcards only as a whole token, never inside one";
            return bad;
        }
    }
    if (tokens > limits.max_tokens) {
        detail = std::string(what) + quoted(name.substr(0, 64)) + " has " +
                 std::to_string(tokens) + " tokens, more than " +
                 std::to_string(limits.max_tokens) + " (max tokens)";
        return channel_error::too_many_tokens;
    }
    return channel_error::none;
}

bool pattern_matches(std::string_view pattern, std::string_view channel) noexcept {
    for (;;) {
        const bool last_p = pattern.find('.') == std::string_view::npos;
        const auto p = next_token(pattern);
        if (p == ">") return !channel.empty();
        if (channel.empty()) return false;
        const bool last_c = channel.find('.') == std::string_view::npos;
        const auto c = next_token(channel);
        if (p != "*" && p != c) return false;
        if (last_p || last_c) return last_p && last_c;
    }
}

bool has_wildcards(std::string_view pattern) noexcept {
    for (std::string_view rest = pattern; !rest.empty();) {
        const auto t = next_token(rest);
        if (t == "*" || t == ">") return true;
    }
    return false;
}

}  // namespace framecast::io
