// Why a client was closed. One table (close_reason.cpp) decides the counter bumped, the log
// level and the text, so a new reason is one row, not a counter and a log line at a new site.
#pragma once

#include <string>
#include <string_view>
#include <system_error>

#include <spdlog/common.h>

#include "framecast/io/server.hpp"

namespace framecast::io {

enum class close_reason {
    closed_by_peer,     // end of stream at a frame boundary
    bad_input,          // the decoder failed (also: a truncated frame at end of stream)
    idle_timeout,       // stuck in the middle of a frame
    join_timeout,       // chat: no username in time
    flood,              // over the rate limit
    slow_consumer,      // queue full, policy disconnect
    bad_username,       // chat: the first frame breaks the name rules
    bad_username_frame, // chat: the first frame's header announces too long a name
    name_taken,         // chat: unique names, and the name is in use
    read_failed,
    write_failed,
    wait_failed,
    shutdown,           // graceful: queue flushed
    drain_timeout,      // graceful stop took too long
    server_stopping,    // close_all(): the text is the caller's
    token_expired,      // auth: the client's token expired while it was connected
};

struct close_rule {
    std::string_view name;            // for tests and debugging
    spdlog::level::level_enum level;  // of the close's log line
    std::string_view text;            // the line's text, followed by the close's detail
};

const close_rule& rule_of(close_reason r) noexcept;

// Bumps the counters `r` stands for; `error` (bad input) also picks a decode_errors_by_kind slot.
void count_close(server_counters& c, close_reason r, std::error_code error = {});

// The close's text: the rule's text and the detail, e.g. "flood: more than 5 messages ...".
std::string close_text(close_reason r, std::string_view detail);

}  // namespace framecast::io
