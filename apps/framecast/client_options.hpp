// What `connect` and `send` (and later `chat`) share on the command line: codec options,
// the mapping from errors to exit codes, and running one coroutine to completion.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "framecast/codec.hpp"

namespace framecast::app {

struct codec_flags {
    std::size_t header_size = default_header_size;
    // The server's default too (io::server_options): a client must not send what the server
    // refuses, nor accept more than it would send.
    std::uint64_t max_message = 1024 * 1024;
    std::string unit = "bytes";  // or "code-points"

    codec_options options() const {
        return {header_size, max_message,
                unit == "code-points" ? length_unit::code_points : length_unit::bytes};
    }
};

// --header-size, --length-unit, and (when `with_max`) --max-message.
void add_codec_options(CLI::App& cmd, codec_flags& flags, bool with_max);

// A seconds option such as "--timeout 2.5"; 0 means none where the help says so.
CLI::Option* add_seconds_option(CLI::App& cmd, const std::string& name, double& value,
                                const std::string& help);
std::chrono::steady_clock::duration to_duration(double seconds);

// Runs `main` on a fresh single-threaded io_context until it completes; SIGINT/SIGTERM end it
// early (after `on_signal`, e.g. to flush output) with 128+signal.
exit_code run_io(const std::function<asio::awaitable<exit_code>(asio::io_context&)>& main,
                 const std::function<void()>& on_signal = {});

}  // namespace framecast::app
