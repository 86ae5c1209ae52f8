// framecast pub HOST:PORT CHANNEL [MESSAGE...]: publish each argument (or each line of stdin)
// to CHANNEL on a `serve --channels` server. Honest about the outcome: after the last message
// it sends PING and exits 0 only once the server's `$sys.pong` says everything before it was
// handled, with no `$sys.error` notice (a refused channel, a limit).
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <spdlog/spdlog.h>

#include "channel_client.hpp"
#include "cli.hpp"
#include "client_security.hpp"
#include "cert_refusal.hpp"
#include "ws_target.hpp"
#include "client_options.hpp"
#include "publish_client.hpp"

namespace framecast::app {
namespace {

using namespace asio::experimental::awaitable_operators;

struct pub_config {
    std::string target;
    std::string channel;
    std::vector<std::string> messages;
    double connect_timeout = 10;
    double close_timeout = 5;
    codec_flags codec;
    int verbosity = 0;
    bool reconnect = false;  // publish acks (docs/resume.md#publishing)
    publish_options publish;
};

struct pub_state {
    error_code write_error;
    bool lingered = false;  // the pong did not come within close_timeout of the last write
    bool pong = false;
    bool write_done = false;
    bool read_ended = false;  // the server closed (or the connection failed) before the pong
    std::uint64_t errors = 0;
    io::read_result read;
    std::string refused;  // --auth cert: the server's reason for refusing our certificate
};

asio::awaitable<void> write_then_wait(io::frame_writer& writer, io::client_stream& socket,
                                      io::duration linger, pub_state& st) {
    st.write_error = co_await writer.run(socket, false);
    st.write_done = true;
    if (st.write_error || st.read_ended) co_return;
    asio::steady_timer timer(co_await asio::this_coro::executor, linger);
    auto [ec] = co_await timer.async_wait(use_nothrow);
    if (!ec) st.lingered = true;
}

// Reads notices until the pong (then stops) or the end of the connection.
asio::awaitable<void> read_notices(io::client_stream& socket, const codec_options& codec,
                                   const std::string& name, pub_state& st) {
    pair_reader reader([&](std::string_view channel, std::string_view payload) {
        if (channel == sys_pong) {
            st.pong = true;
            return false;
        }
        if (channel == sys_error) ++st.errors;
        spdlog::log(channel == sys_error ? spdlog::level::err : spdlog::level::debug,
                    "{}: {} {}", name, escape_controls(channel, true),
                    escape_controls(payload, true));
        return true;
    });
    decoder dec(codec, decode_mode::whole);
    std::vector<char> buffer(64 * 1024);
    cert_refusal_watch watch(reader);
    st.read = co_await io::read_frames(socket, dec, buffer, watch);
    st.refused = watch.refused();
    if (st.pong) co_return;
    st.read_ended = true;
    if (!st.write_done) co_await io::wait_forever();  // let the writer finish or fail first
}

asio::awaitable<exit_code> run_pub(const pub_config& cfg, io::frame_writer& writer) {
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
    pub_state st;
    co_await (read_notices(socket, cfg.codec.options(), name, st) ||
              write_then_wait(writer, socket, to_duration(cfg.close_timeout), st));
    if (!st.refused.empty()) {
        co_return report_cert_refusal(name, st.refused);
    }
    if (st.pong && st.errors == 0) {
        spdlog::debug("{}: everything published", name);
        co_return exit_code::ok;
    }
    if (st.pong) {
        spdlog::error("{}: the server refused {} command{} (see above)", name, st.errors,
                      st.errors == 1 ? "" : "s");
        co_return exit_code::failure;
    }
    if (st.write_error) {
        spdlog::error("{}: sending failed after {} bytes: {}", name, writer.bytes_written(),
                      st.write_error.message());
        co_return exit_code::failure;
    }
    if (st.lingered) {
        spdlog::error("{}: no answer to the final PING within {}s; some messages may not have "
                      "been published (is it a 'serve --channels' server?)",
                      name, cfg.close_timeout);
        co_return exit_code::timed_out;
    }
    // (Checked after lingered: the wait ending cancels the reader, which then looks ended.)
    if (st.read_ended) {
        spdlog::error("{} closed the connection before confirming everything ({} bytes sent{}{})",
                      name, writer.bytes_written(), st.read.message.empty() ? "" : ": ",
                      st.read.message);
        co_return exit_code::failure;
    }
    co_return exit_code::failure;  // not reached: one of the branches above ended the wait
}

}  // namespace

command_runner register_pub(CLI::App& app) {
    auto cfg = std::make_shared<pub_config>();
    auto* cmd = app.add_subcommand(
        "pub",
        "Publish each MESSAGE (or each line of standard input) to CHANNEL on a 'serve "
        "--channels' server (docs/channels.md). Exits 0 only when the server confirmed it "
        "handled every message (a final PING answered by $sys.pong, no $sys.error)");
    cmd->add_option("target", cfg->target, "Where to connect: HOST:PORT or [IPv6]:PORT")
        ->required()
        ->check(endpoint_validator());
    cmd->add_option("channel", cfg->channel, "The channel, e.g. prices.eu (no wildcards)")
        ->required();
    cmd->add_option("messages", cfg->messages,
                    "Messages to publish, one frame each; none: each line of standard input");
    add_seconds_option(*cmd, "--connect-timeout", cfg->connect_timeout,
                       "Give up connecting after SECONDS");
    add_seconds_option(*cmd, "--close-timeout", cfg->close_timeout,
                       "After the last byte is written, wait up to SECONDS for the server's "
                       "confirmation (exit 7 without it)");
    add_codec_options(*cmd, cfg->codec, true);
    add_publish_options(*cmd, cfg->reconnect, cfg->publish);
    add_security_options(*cmd);
    add_verbosity_flags(*cmd, cfg->verbosity);

    return [cfg] {
        setup_logging(cfg->verbosity);
        const auto codec = cfg->codec.options();
        // --reconnect: what waits in the queue adds to what the resend buffer holds.
        const std::size_t pending = cfg->reconnect
            ? std::clamp<std::uint64_t>(cfg->publish.max_unacked / 4, 64 << 10, 4 << 20)
            : 4 << 20;
        auto queue = std::make_shared<io::send_queue>(codec, pending);
        std::string pub_frame, ping_frame;
        if (auto ec = append_frame(pub_frame, "PUB " + cfg->channel, codec)) {
            spdlog::error("cannot send 'PUB {}': {}", cfg->channel, ec.message());
            return exit_code_for(ec);
        }
        // With --reconnect the last acknowledgement confirms everything: no final PING.
        if (!cfg->reconnect) append_frame(ping_frame, "PING", codec);
        for (std::size_t i = 0; i < cfg->messages.size(); ++i) {
            queue->push_encoded(pub_frame);
            if (auto ec = queue->push(cfg->messages[i])) {
                spdlog::error("cannot send message {}: {}", i + 1, ec.message());
                return exit_code_for(ec);
            }
        }
        struct reader_state {
            std::atomic<bool> done{false};
            error_code ec;
            std::string what;
        };
        auto reader = std::make_shared<reader_state>();
        std::thread thread;
        if (cfg->messages.empty()) {
            // stdin on a thread of its own: a file, a pipe or a terminal.
            thread = std::thread([queue, reader, pub_frame, ping_frame] {
                reader->ec = io::queue_lines(STDIN_FILENO, *queue, reader->what, pub_frame,
                                             ping_frame);
                reader->done = true;
            });
        } else {
            queue->push_encoded(ping_frame);
            queue->close();
        }
        auto code = run_io([&](asio::io_context& io) -> asio::awaitable<exit_code> {
            if (cfg->reconnect) {
                cfg->publish.target = cfg->target;
                cfg->publish.connect_timeout = cfg->connect_timeout;
                cfg->publish.codec = codec;
                cfg->publish.frames_per_message = 2;  // PUB channel, payload
                cfg->publish.channels = true;
                co_return co_await run_reliable_publish(cfg->publish, queue);
            }
            io::frame_writer writer(io.get_executor(), queue);
            co_return co_await run_pub(*cfg, writer);
        });
        if (thread.joinable()) {
            if (reader->done) {
                thread.join();
                if (reader->ec) {
                    spdlog::error("{}{}", reader->what, flag_hint(reader->ec));
                    if (code == exit_code::ok || code == exit_code::timed_out ||
                        code == exit_code::failure) {
                        code = exit_code_for(reader->ec);
                    }
                }
            } else {
                thread.detach();  // still blocked on stdin; the process ends anyway
            }
        }
        return code;
    };
}

}  // namespace framecast::app
