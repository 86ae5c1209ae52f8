// What every framecast subcommand shares: registration, exit codes, endpoints, logging.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <system_error>

#include <CLI/CLI.hpp>

#include "framecast/error.hpp"

namespace framecast::app {

// Distinct exit codes, so scripts can tell failures apart (framecast/error.hpp, where the
// codec's errors map to them). Documented in `framecast --help`.
using framecast::exit_code;

// The exit code that tells scripts what an error (codec, socket, resolver) was. Boost.Asio's
// socket errors convert to the std system category, so the library's table sees them all.
using framecast::exit_code_for;

// A subcommand registers its options on `app` and returns what runs it once parsed.
using command_runner = std::function<exit_code()>;

command_runner register_serve(CLI::App& app);
command_runner register_connect(CLI::App& app);
command_runner register_send(CLI::App& app);
command_runner register_stats(CLI::App& app);
command_runner register_chat(CLI::App& app);
command_runner register_bench(CLI::App& app);
command_runner register_sub(CLI::App& app);
command_runner register_pub(CLI::App& app);

// "HOST:PORT", "[v6addr]:PORT", or ":PORT"/"PORT" (all interfaces); or, where a client
// connects, a WebSocket URL "ws://HOST[:PORT][/PATH]" (docs/websocket.md).
struct endpoint {
    std::string host;
    std::uint16_t port = 0;
    std::string ws_path;  // set for a ws:// URL: the client uses the WebSocket transport
    bool wss = false;     // a wss:// URL: WebSocket over TLS
    std::string to_string() const;
};
// Throws CLI::ValidationError naming what is wrong.
endpoint parse_endpoint(const std::string& text);
// "ws://HOST[:PORT][/PATH]" (port 80 by default) or "wss://..." (443) as an endpoint with
// ws_path (ws_target.cpp).
endpoint parse_ws_url(const std::string& text);
// A CLI11 validator for the same syntax.
CLI::Validator endpoint_validator();
// A CLI11 validator from a parser that throws CLI::ValidationError naming what is wrong;
// `syntax` is what --help shows (e.g. "N/s").
CLI::Validator validator_from(std::function<void(const std::string&)> parse, std::string syntax);

// The option behind a library error, for the messages the CLI prints (library messages name
// concepts, not flags): " (--max-message)" after a message over the largest size, else "".
std::string flag_hint(std::error_code ec);

enum class log_format { text, json };
// Chosen once by main from the global --log-format option, before any command runs.
void set_log_format(log_format format);
// True when logs go to a terminal in text format: plain lines (no time, no level for news),
// as a person reads them; false for --log-format json and for files, pipes and journals.
bool plain_terminal_logs();
// stderr logging, one line per event with time and level (text), or one JSON object per line
// ({"time":…,"level":…,"msg":…}) for log collectors. verbosity: -1 quiet, 0 info, 1 debug.
void setup_logging(int verbosity);
// Adds --quiet/--verbose to a subcommand; the value lands in `verbosity`.
void add_verbosity_flags(CLI::App& cmd, int& verbosity);

// Parses sizes such as "16", "64KiB", "8MiB", "1GB" (CLI11's AsSizeValue, 1 KiB = 1024).
CLI::Option* add_size_option(CLI::App& cmd, const std::string& name, std::uint64_t& value,
                             const std::string& help);

// Fails with "'abc' is not a number" (CLI11's Range says "not in range" for any text). Add it
// with ->transform() so it runs before the option's other checks.
CLI::Validator number_validator();

}  // namespace framecast::app
