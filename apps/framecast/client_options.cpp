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
                        "Largest payload sent or accepted (e.g. 64KiB, 1GB; the server's default "
                        "too): a longer message is refused before it is sent, a header announcing "
                        "more fails before anything is buffered");
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
        ->transform(number_validator())
        ->default_val(value);
}

std::chrono::steady_clock::duration to_duration(double seconds) {
    return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(seconds));
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
