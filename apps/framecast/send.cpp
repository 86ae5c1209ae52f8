// framecast send HOST:PORT [MESSAGE...]: send each argument (or file, or stdin line) as one frame,
// then close cleanly so that nothing sent is lost, and say so (exit 0) only when the peer took
// everything: a server that refuses a message closes the connection before our close.
#include <algorithm>
#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "client_security.hpp"
#include "cert_refusal.hpp"
#include "ws_target.hpp"
#include "client_options.hpp"
#include "framecast/io/client.hpp"
#include "publish_client.hpp"
#include "send_input.hpp"

namespace framecast::app {
namespace {

using namespace asio::experimental::awaitable_operators;
constexpr auto use = use_nothrow;

struct send_config {
    std::string target;
    send_input input;
    std::string rate;
    double connect_timeout = 10;
    double close_timeout = 5;
    double settle = 0.2;
    codec_flags codec;
    int verbosity = 0;
    bool reconnect = false;  // publish acks (docs/resume.md#publishing)
    publish_options publish;
};

// The state both halves of a send share.
struct send_state {
    error_code write_error;
    bool shut_down = false;     // our clean close (FIN) is sent
    bool peer_closed = false;   // the peer closed after it
    bool premature = false;     // the peer closed (EOF or reset) before it
    error_code read_error;
    bool lingered = false;
    std::uint64_t frames_in = 0;  // what the peer sent us (a --publish server sends none)
    std::string first_in;         // the first of them, cut short, for the mismatch warning
    std::string refused;          // --auth cert: the server's reason for refusing our certificate
};

// Waits until the peer's kernel has acknowledged every byte we wrote (Linux SIOCOUTQ), at most
// `limit`: only then can the peer have judged all of it.
asio::awaitable<void> wait_acknowledged(io::client_stream& socket, io::duration limit) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int unacked = 0;
        if (::ioctl(socket.native_handle(), SIOCOUTQ, &unacked) != 0 || unacked == 0) co_return;
        if (std::chrono::steady_clock::now() >= deadline) co_return;
        timer.expires_after(std::chrono::milliseconds(2));
        co_await timer.async_wait(use);
    }
}

// Writes everything queued; once the peer has it all and has had `settle` to object (a server
// that refuses a message closes the connection), closes our sending side cleanly and gives the
// peer `linger` to close too.
asio::awaitable<void> write_then_close(io::frame_writer& writer, io::client_stream& socket,
                                       const send_config& cfg, send_state& st) {
    st.write_error = co_await writer.run(socket, false);
    if (st.write_error) co_return;
    co_await wait_acknowledged(socket, to_duration(cfg.close_timeout));
    asio::steady_timer timer(co_await asio::this_coro::executor, to_duration(cfg.settle));
    co_await timer.async_wait(use);
    co_await socket.shutdown_send();
    st.shut_down = true;
    timer.expires_after(to_duration(cfg.close_timeout));
    auto [ec] = co_await timer.async_wait(use);
    if (!ec) st.lingered = true;  // else cancelled: the peer closed in time
}

// Remembers what the peer sends (frames are counted, the first one kept for a warning).
class peer_frames final : public io::frame_handler {
public:
    explicit peer_frames(send_state& st) : st_(st) {}
    bool on_frame(std::string_view payload) override {
        if (st_.frames_in++ == 0) st_.first_in.assign(payload.substr(0, 60));
        return true;
    }

private:
    send_state& st_;
};

// Discards the rest of a stream that is not frames; {} at its end.
asio::awaitable<error_code> discard(io::client_stream& socket) {
    std::array<char, 64 * 1024> sink;
    for (;;) {
        auto [ec, n] = co_await socket.read_some(asio::buffer(sink));
        if (ec == asio::error::eof) co_return error_code{};
        if (ec) co_return ec;
    }
}

// Reads what the peer sends (so it never blocks on us, and our close never resets the
// connection), until it closes. A close before ours means it did not take everything.
asio::awaitable<void> drain(io::client_stream& socket, const codec_options& opts, send_state& st) {
    std::vector<char> buffer(64 * 1024);
    decoder dec(opts, decode_mode::whole);
    peer_frames frames(st);
    cert_refusal_watch watch(frames);
    auto res = co_await io::read_frames(socket, dec, buffer, watch);
    if (!watch.refused().empty()) {
        st.refused = watch.refused();
        co_return;
    }
    error_code end = res.ec;
    if (end == asio::error::operation_aborted) co_return;
    if (end && exit_code_for(end) != exit_code::failure && exit_code_for(end) != exit_code::truncated) {
        end = co_await discard(socket);  // not frames: only the end of the stream matters
        if (end == asio::error::operation_aborted) co_return;
    }
    const bool reset = end && exit_code_for(end) == exit_code::failure;
    if (reset) st.read_error = end;
    if (!st.shut_down) {
        st.premature = true;
        co_return;
    }
    if (!reset) st.peer_closed = true;
}

// A plain streaming server (framecast serve without --publish, the tutorial's server.py) reads
// what clients send and drops it. It is known by what it sends first: the tutorial's welcome
// (which servers of data, --publish included, no longer send by default) or a time message.
bool streaming_server(const send_state& st) {
    return st.frames_in > 0 && (st.first_in == "Welcome to the server!" ||
                                st.first_in.rfind("The time is ", 0) == 0);
}

asio::awaitable<exit_code> run_send(const send_config& cfg, io::frame_writer& writer) {
    auto ex = co_await asio::this_coro::executor;
    const endpoint target = parse_endpoint(cfg.target);
    const std::string name = target.to_string();
    io::client_stream socket(ex);
    std::string what;
    const error_code failed = co_await connect_to(socket, target, to_duration(cfg.connect_timeout),
                                                  what, cfg.codec.options());
    if (failed) {
        spdlog::error("{}", what);
        co_return connect_exit_code(failed);
    }
    spdlog::debug("connected to {}", name);

    send_state st;
    co_await (drain(socket, cfg.codec.options(), st) || write_then_close(writer, socket, cfg, st));
    if (!st.refused.empty()) {
        co_return report_cert_refusal(name, st.refused);
    }
    if (streaming_server(st) && !st.write_error) {
        spdlog::error("{} sent '{}': it is a streaming server, which discards what clients send "
                      "(framecast serve takes messages with --publish or --chat)",
                      name, escape_controls(st.first_in));
        co_return exit_code::failure;
    }
    if (st.premature || st.write_error == asio::error::broken_pipe ||
        st.write_error == asio::error::connection_reset) {
        spdlog::error("{} closed the connection{} before send was done ({} bytes written): it did "
                      "not take everything; its log says why (e.g. a message over its "
                      "--max-message, more than its --max-rate, a header it cannot read)",
                      name, st.read_error || st.write_error ? " (reset)" : "",
                      writer.bytes_written());
        co_return exit_code::failure;
    }
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
        "send",
        "Send messages to HOST:PORT: each MESSAGE, --file or line of standard input is one frame; "
        "exit 0 only once the peer has taken everything and closed cleanly");
    cmd->add_option("target", cfg->target, "Where to connect: HOST:PORT or [IPv6]:PORT")
        ->required()
        ->check(endpoint_validator());
    cmd->add_option("messages", cfg->input.messages,
                    "Messages to send, one frame each; none (and no --file): standard input");
    cmd->add_option("-f,--file", cfg->input.files,
                    "Send the whole file as one message (binary or multi-line); repeatable")
        ->allow_extra_args(false)
        ->check(CLI::ExistingFile);
    cmd->add_option("-i,--input", cfg->input.format,
                    "How standard input is read: 'lines' (each line one message), 'raw' (all of "
                    "it one message), 'framed' (frames already, e.g. `connect -o framed` output)")
        ->check(CLI::IsMember({"lines", "raw", "framed"}))
        ->default_val(cfg->input.format);
    cmd->add_option("--rate", cfg->rate,
                    "Send at most N messages per second, evenly spaced (N/s, e.g. 100/s)")
        ->check(validator_from([](const std::string& s) { parse_rate(s); }, "N/s"));
    add_seconds_option(*cmd, "--connect-timeout", cfg->connect_timeout,
                       "Give up connecting after SECONDS");
    add_seconds_option(*cmd, "--settle", cfg->settle,
                       "Once the peer has acknowledged every byte, wait SECONDS before closing: a "
                       "server that refuses a message closes the connection, and a close before "
                       "ours is an error (exit 1)");
    add_seconds_option(*cmd, "--close-timeout", cfg->close_timeout,
                       "After our close, wait up to SECONDS for the peer to close");
    add_codec_options(*cmd, cfg->codec, true);  // --max-message bounds every message
    add_publish_options(*cmd, cfg->reconnect, cfg->publish);
    add_security_options(*cmd);
    add_verbosity_flags(*cmd, cfg->verbosity);

    return [cfg] {
        setup_logging(cfg->verbosity);
        if (!cfg->rate.empty()) cfg->input.rate = parse_rate(cfg->rate);
        // --reconnect: what waits in the queue adds to what the resend buffer holds.
        const std::size_t pending = cfg->reconnect
            ? std::clamp<std::uint64_t>(cfg->publish.max_unacked / 4, 64 << 10, 4 << 20)
            : 4 << 20;
        auto queue = std::make_shared<io::send_queue>(cfg->codec.options(), pending);
        // Arguments are checked before connecting: a usage problem, not the peer's.
        const auto opts = cfg->codec.options();
        for (std::size_t i = 0; i < cfg->input.messages.size(); ++i) {
            const auto& m = cfg->input.messages[i];
            std::string scratch;
            auto ec = m.size() > opts.max_message ? make_error_code(errc::message_too_large)
                                                  : append_frame(scratch, m, opts);
            if (ec) {
                spdlog::error("cannot send message {}: {}{}", i + 1, ec.message(), flag_hint(ec));
                return exit_code_for(ec);
            }
        }

        // The input is read on a thread of its own: stdin may be a file, a pipe or a terminal.
        struct reader_state {
            std::atomic<bool> done{false};
            error_code ec;
            std::string what;
        };
        auto reader = std::make_shared<reader_state>();
        std::thread thread([queue, reader, input = cfg->input] {
            reader->ec = feed(input, *queue, reader->what);
            reader->done = true;
        });

        auto code = run_io([&](asio::io_context& io) -> asio::awaitable<exit_code> {
            if (cfg->reconnect) {
                cfg->publish.target = cfg->target;
                cfg->publish.connect_timeout = cfg->connect_timeout;
                cfg->publish.codec = cfg->codec.options();
                co_return co_await run_reliable_publish(cfg->publish, queue);
            }
            io::frame_writer writer(io.get_executor(), queue);
            co_return co_await run_send(*cfg, writer);
        });

        if (reader->done) {
            thread.join();
            if (reader->ec) {
                const bool named = reader->what.find("--max-message") != std::string::npos;
                spdlog::error("{}{}", reader->what, named ? "" : flag_hint(reader->ec));
                if (code == exit_code::ok) code = exit_code_for(reader->ec);
            }
        } else {
            thread.detach();  // still blocked on stdin; the process ends anyway
        }
        return code;
    };
}

}  // namespace framecast::app
