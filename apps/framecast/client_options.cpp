#include "client_options.hpp"

#include <csignal>
#include <exception>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

namespace framecast::app {

void add_codec_options(CLI::App& cmd, codec_flags& flags, bool with_max) {
    cmd.add_option("--header-size", flags.header_size,
                   "Bytes in each frame header (the tutorial's HEADERSIZE)")
        ->check(CLI::Range(min_header_size, max_header_size))
        ->default_val(flags.header_size);
    if (with_max) {
        add_size_option(cmd, "--max-message", flags.max_message,
                        "Largest payload accepted (e.g. 64KiB, 1GB); a header announcing more "
                        "fails before anything is buffered");
    }
    cmd.add_option("--length-unit", flags.unit,
                   "What header lengths count: bytes, or code-points (UTF-8 characters, for "
                   "peers that frame with Python's len(str))")
        ->check(CLI::IsMember({"bytes", "code-points"}, CLI::ignore_case))
        ->default_val(flags.unit);
}

CLI::Option* add_seconds_option(CLI::App& cmd, const std::string& name, double& value,
                                const std::string& help) {
    return cmd.add_option(name, value, help)
        ->check(CLI::Range(0.0, 1e7))
        ->default_val(value);
}

std::chrono::steady_clock::duration to_duration(double seconds) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(seconds));
}

exit_code exit_code_for(std::error_code ec) {
    if (!ec) return exit_code::ok;
    if (ec.category() == codec_category()) {
        switch (static_cast<errc>(ec.value())) {
            case errc::header_no_digits:
            case errc::header_sign:
            case errc::header_underscore:
            case errc::header_interior_space:
            case errc::header_non_ascii:
            case errc::header_invalid_char: return exit_code::malformed_header;
            case errc::message_too_large:
            case errc::length_does_not_fit: return exit_code::message_too_large;
            case errc::truncated_frame: return exit_code::truncated;
            case errc::invalid_utf8: return exit_code::invalid_utf8;
            case errc::invalid_header_size: return exit_code::usage;
        }
        return exit_code::failure;
    }
    if (ec == std::errc::timed_out) return exit_code::timed_out;  // Asio's timed_out is ETIMEDOUT
    return exit_code::failure;
}

exit_code run_io(const std::function<asio::awaitable<exit_code>(asio::io_context&)>& main,
                 const std::function<void()>& on_signal) {
    asio::io_context io(1);
    std::optional<exit_code> result;
    std::exception_ptr failure;
    asio::co_spawn(io, main(io), [&](std::exception_ptr e, exit_code code) {
        failure = e;
        result = code;
        io.stop();
    });
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](error_code ec, int signal) {
        if (ec) return;
        spdlog::debug("stopped by signal {}", signal);
        if (on_signal) on_signal();
        result = static_cast<exit_code>(128 + signal);
        io.stop();
    });
    io.run();
    if (failure) std::rethrow_exception(failure);
    return result.value_or(exit_code::failure);
}

}  // namespace framecast::app
