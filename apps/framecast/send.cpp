// framecast send HOST:PORT [MESSAGE...]: send each argument (or each line of stdin) as one frame,
// then close cleanly so that nothing sent is lost.
#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "client_security.hpp"
#include "ws_target.hpp"
#include "client_options.hpp"
#include "framecast/io/client.hpp"

namespace framecast::app {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr auto use = use_nothrow;

struct send_config {
    std::string target;
    std::vector<std::string> messages;
    double connect_timeout = 10;
    double close_timeout = 5;
    codec_flags codec;
    int verbosity = 0;
};

// The state both halves of a send share.
struct send_state {
    bool write_done = false;
    error_code write_error;
    bool peer_closed = false;
    error_code read_error;
    bool lingered = false;
};

// Writes everything queued, shuts down the sending side, then gives the peer `linger` to close.
asio::awaitable<void> write_then_linger(io::frame_writer& writer, io::tcp::socket& socket,
                                        io::duration linger, send_state& st) {
    st.write_error = co_await writer.run(socket);
    st.write_done = true;
    if (st.write_error || st.peer_closed) co_return;
    asio::steady_timer timer(co_await asio::this_coro::executor, linger);
    auto [ec] = co_await timer.async_wait(use);
    if (!ec) st.lingered = true;  // else cancelled: the peer closed in time
}

// Reads and discards what the peer sends (so it never blocks on us, and our close never resets
// the connection), until it closes. A peer that closes before we are done writing may still be
// reading: keep going until the writer finishes.
asio::awaitable<void> drain(io::tcp::socket& socket, send_state& st) {
    std::array<char, 64 * 1024> sink;
    for (;;) {
        auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), use);
        if (ec == asio::error::eof) {
            st.peer_closed = true;
            if (st.write_done) co_return;
            co_await io::wait_forever();
            co_return;
        }
        if (ec) {
            if (ec != asio::error::operation_aborted) st.read_error = ec;  // else: we are done
            co_return;
        }
        spdlog::debug("discarded {} bytes from the peer", n);
    }
}

asio::awaitable<exit_code> run_send(const send_config& cfg, io::frame_writer& writer) {
    auto ex = co_await asio::this_coro::executor;
    const endpoint target = parse_endpoint(cfg.target);
    const std::string name = target.to_string();
    io::tcp::socket socket(ex);
    std::string what;
    const error_code failed = co_await connect_to(socket, target, to_duration(cfg.connect_timeout),
                                                  what, cfg.codec.options());
    if (failed) {
        spdlog::error("{}", what);
        co_return connect_exit_code(failed);
    }
    spdlog::debug("connected to {}", name);

    send_state st;
    co_await (drain(socket, st) ||
              write_then_linger(writer, socket, to_duration(cfg.close_timeout), st));
    if (st.write_error) {
        spdlog::error("{}: sending failed after {} bytes: {}", name, writer.bytes_written(),
                      st.write_error.message());
        co_return exit_code::failure;
    }
    if (st.read_error) {
        spdlog::error("{}: connection lost: {}", name, st.read_error.message());
        co_return exit_code::failure;
    }
    if (st.lingered) {
        spdlog::warn("{} did not close the connection within {}s of the last message; closing",
                     name, cfg.close_timeout);
    }
    spdlog::debug("sent {} bytes to {}", writer.bytes_written(), name);
    co_return exit_code::ok;
}

}  // namespace

command_runner register_send(CLI::App& app) {
    auto cfg = std::make_shared<send_config>();
    auto* cmd = app.add_subcommand(
        "send", "Send each MESSAGE (or each line of standard input) as one frame to HOST:PORT");
    cmd->add_option("target", cfg->target, "Where to connect: HOST:PORT or [IPv6]:PORT")
        ->required()
        ->check(endpoint_validator());
    cmd->add_option("messages", cfg->messages,
                    "Messages to send, one frame each; none: each line of standard input");
    add_seconds_option(*cmd, "--connect-timeout", cfg->connect_timeout,
                       "Give up connecting after SECONDS");
    add_seconds_option(*cmd, "--close-timeout", cfg->close_timeout,
                       "After the last byte is written, wait up to SECONDS for the peer to close");
    add_codec_options(*cmd, cfg->codec, true);
    add_security_options(*cmd);  // --max-message bounds a stdin line too
    add_verbosity_flags(*cmd, cfg->verbosity);

    return [cfg] {
        setup_logging(cfg->verbosity);
        auto queue = std::make_shared<io::send_queue>(cfg->codec.options(), 4 << 20);
        for (std::size_t i = 0; i < cfg->messages.size(); ++i) {
            if (auto ec = queue->push(cfg->messages[i])) {
                spdlog::error("cannot send message {}: {}", i + 1, ec.message());
                return exit_code_for(ec);
            }
        }

        // stdin is read on a thread of its own: it may be a file, a pipe or a terminal.
        struct reader_state {
            std::atomic<bool> done{false};
            error_code ec;
            std::string what;
        };
        auto reader = std::make_shared<reader_state>();
        std::thread thread;
        if (cfg->messages.empty()) {
            thread = std::thread([queue, reader] {
                reader->ec = io::queue_lines(STDIN_FILENO, *queue, reader->what);
                reader->done = true;
            });
        } else {
            queue->close();
        }

        auto code = run_io([&](asio::io_context& io) -> asio::awaitable<exit_code> {
            io::frame_writer writer(io.get_executor(), queue);
            co_return co_await run_send(*cfg, writer);
        });

        if (thread.joinable()) {
            if (reader->done) {
                thread.join();
                if (reader->ec) {
                    spdlog::error("{}{}", reader->what, flag_hint(reader->ec));
                    if (code == exit_code::ok) code = exit_code_for(reader->ec);
                }
            } else {
                thread.detach();  // still blocked on stdin; the process ends anyway
            }
        }
        return code;
    };
}

}  // namespace framecast::app
