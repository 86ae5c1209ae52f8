#include "close_reason.hpp"

#include <array>
#include <cstdint>

#include "framecast/error.hpp"

namespace framecast::io {

namespace {

using level = spdlog::level::level_enum;
using counter = std::uint64_t server_counters::*;

struct row {
    close_rule rule;
    counter first = nullptr;   // bumped on this close (null: none)
    counter second = nullptr;
};

// Indexed by close_reason; the order must match the enum (checked below).
constexpr std::array<row, 16> table{{
    {{"closed_by_peer", level::info, "closed by peer"}},
    {{"bad_input", level::warn, "bad input: "}, &server_counters::decode_errors},
    {{"idle_timeout", level::warn, "idle timeout: "}, &server_counters::idle_timeouts},
    {{"join_timeout", level::warn, "join timeout: "}, &server_counters::idle_timeouts},
    {{"flood", level::warn, "flood: "}, &server_counters::floods},
    {{"slow_consumer", level::warn, "slow consumer: "}, &server_counters::slow_disconnects},
    {{"bad_username", level::warn, "bad username: "}, &server_counters::chat_names_rejected},
    {{"bad_username_frame", level::warn, "bad username: "}, &server_counters::chat_names_rejected,
     &server_counters::decode_errors},
    {{"name_taken", level::warn, ""}, &server_counters::chat_names_rejected},
    {{"read_failed", level::info, "read failed: "}},
    {{"write_failed", level::info, "write failed: "}},
    {{"wait_failed", level::info, "wait failed: "}},
    {{"shutdown", level::info, "server shutting down (queue flushed)"}},
    {{"drain_timeout", level::warn, "drain timeout: queue not flushed (drain timeout)"}},
    {{"server_stopping", level::warn, ""}},
    {{"token_expired", level::info, "token expired"}, &server_counters::auth_expired},
}};
static_assert(table.size() == static_cast<std::size_t>(close_reason::token_expired) + 1);

const row& row_of(close_reason r) noexcept { return table[static_cast<std::size_t>(r)]; }

}  // namespace

const close_rule& rule_of(close_reason r) noexcept { return row_of(r).rule; }

void count_close(server_counters& c, close_reason r, std::error_code error) {
    const row& x = row_of(r);
    if (x.first) ++(c.*x.first);
    if (x.second) ++(c.*x.second);
    const bool decode_error =
        x.first == &server_counters::decode_errors || x.second == &server_counters::decode_errors;
    if (decode_error && error.category() == codec_category() && error.value() > 0 &&
        static_cast<std::size_t>(error.value()) < c.decode_errors_by_kind.size()) {
        ++c.decode_errors_by_kind[static_cast<std::size_t>(error.value())];
    }
}

std::string close_text(close_reason r, std::string_view detail) {
    std::string text(row_of(r).rule.text);
    text.append(detail);
    return text;
}

}  // namespace framecast::io
