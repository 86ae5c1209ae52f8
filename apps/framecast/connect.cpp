// framecast connect HOST:PORT: print every message a peer sends, framed correctly whatever the
// chunking of the byte stream.
#include <cerrno>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "client_security.hpp"
#include "cert_refusal.hpp"
#include "ws_target.hpp"
#include "client_options.hpp"
#include "framecast/io/backoff.hpp"
#include "framecast/io/client.hpp"
#include "framecast/io/json.hpp"
#include "output.hpp"
#include "resume_client.hpp"

namespace framecast::app {
namespace {

using namespace asio::experimental::awaitable_operators;

struct connect_config {
    std::string target;
    std::string format_name = "lines";
    output_format format = output_format::lines;
    std::uint64_t buffer_size = 256 * 1024;
    std::uint64_t count = 0;
    double timeout = 0;
    double connect_timeout = 10;
    bool send = false;
    bool half_close = false;
    bool reconnect = false;
    double reconnect_max = 30;
    bool line_buffered = false;
    // Resume (docs/resume.md).
    bool resume = false;
    bool no_gap = false;
    std::string offset_file;
    codec_flags codec;
    int verbosity = 0;
};

double seconds(io::duration d) { return std::chrono::duration<double>(d).count(); }

asio::awaitable<void> send_while_connected(io::frame_writer& writer, io::client_stream& socket,
                                          bool half_close) {
    // By default no half-close at end of input: framecast serve (like the tutorial's servers)
    // takes the end of a client's stream as the client leaving, and would stop sending to us.
    auto ec = co_await writer.run(socket, half_close);
    if (ec && ec != asio::error::operation_aborted) {
        spdlog::warn("sending failed: {}", ec.message());
    }
    co_await io::wait_forever();  // finishing must not end the reading side
}

// How one connection ended: exit with a code, or try again (and why).
struct verdict {
    std::optional<exit_code> exit;
    std::string retry_because;
};

verdict exit_with(exit_code code) { return {code, {}}; }

// Connects, prints what arrives, and (with --reconnect) connects again after a failure or a
// close, waiting a backoff delay between attempts, until the count, an error that retrying
// cannot cure, or the end of output.
class connect_loop {
public:
    connect_loop(const connect_config& cfg, output_sink& sink, io::frame_writer* writer,
                 resume_reader* resume, asio::any_io_executor ex)
        : cfg_(cfg),
          sink_(sink),
          writer_(writer),
          resume_(resume),
          ex_(std::move(ex)),
          target_(parse_endpoint(cfg.target)),
          name_(target_.to_string()),
          buffer_(cfg.buffer_size),
          delays_({.min = std::chrono::milliseconds(100), .max = to_duration(cfg.reconnect_max)}) {}

    asio::awaitable<exit_code> run() {
        for (unsigned attempt = 1;; ++attempt) {
            auto v = co_await one_connection();
            if (v.exit) co_return *v.exit;
            co_await wait_to_retry(v.retry_because, attempt + 1);
        }
    }

private:
    // One connection, from connecting to its end.
    asio::awaitable<verdict> one_connection() {
        io::client_stream socket(ex_);
        std::string what;
        const auto failed = co_await connect_to(socket, target_, to_duration(cfg_.connect_timeout),
                                                what, cfg_.codec.options());
        if (failed) co_return connect_failed(what, failed);
        spdlog::info("connected to {}", name_);
        if (resume_) {
            const auto ec = co_await send_request(socket);
            if (ec) co_return broken({ec, "cannot send the resume request: " + ec.message()});
        }
        const auto res = co_await receive(socket);
        sink_.flush();
        // --auth cert refused our certificate: retrying will not change its mind.
        if (!refused_.empty()) {
            co_return exit_with(report_cert_refusal(name_, refused_));
        }
        if (auto v = output_failed()) co_return *v;
        if (resume_) {
            resume_->save();
            if (resume_->failure()) {
                spdlog::error("{}", resume_->failure_text());
                co_return exit_with(*resume_->failure());
            }
            if (res.ec == asio::error::timed_out && !resume_->answered()) {
                spdlog::error("{}: no answer to the resume request within {}s: is it running "
                              "'serve --resume'?", name_, cfg_.connect_timeout);
                co_return exit_with(exit_code::failure);
            }
        }
        if (res.stopped) co_return exit_with(exit_code::ok);
        if (res.bytes > 0) delays_.reset();
        co_return res.ec ? broken(res) : closed_by_peer();
    }

    // Reads (and with --send writes) until the connection ends.
    asio::awaitable<io::read_result> receive(io::client_stream& socket) {
        // Raw and framed output stream a large payload through; a resuming reader counts
        // whole messages (their offsets), so it takes them whole in every format.
        const bool streaming = !resume_ && (cfg_.format == output_format::raw ||
                                            cfg_.format == output_format::framed);
        const auto mode = streaming ? decode_mode::streaming : decode_mode::whole;
        decoder dec(cfg_.codec.options(), mode);
        // One connection: keep the gathering buffer of a large frame for the next one.
        dec.retain_capacity(dec.options().max_message);
        const io::read_options read_opts{to_duration(cfg_.timeout)};
        if (resume_) {
            cert_refusal_watch watch(*resume_);
            auto outcome = co_await (io::read_frames(socket, dec, buffer_, watch, read_opts) ||
                                     answer_deadline());
            refused_ = watch.refused();
            if (outcome.index() == 0) co_return std::get<0>(std::move(outcome));
            co_return io::read_result{.ec = asio::error::timed_out, .message = "no resume answer"};
        }
        cert_refusal_watch watch(sink_);
        if (!writer_) {
            auto r = co_await io::read_frames(socket, dec, buffer_, watch, read_opts);
            watch.finish();
            refused_ = watch.refused();
            co_return r;
        }
        auto outcome = co_await (io::read_frames(socket, dec, buffer_, watch, read_opts) ||
                                 send_while_connected(*writer_, socket, cfg_.half_close));
        watch.finish();
        refused_ = watch.refused();
        co_return std::get<0>(std::move(outcome));
    }

    // Resume: the request is the connection's first frame.
    asio::awaitable<error_code> send_request(io::client_stream& socket) {
        const std::string frame = encode_frame(resume_->request(), cfg_.codec.options());
        auto [ec, n] = co_await socket.write(asio::buffer(frame));
        co_return ec;
    }

    // Resume: a server that does not answer the request (not running --resume) ends the wait.
    asio::awaitable<void> answer_deadline() {
        asio::steady_timer timer(ex_, to_duration(cfg_.connect_timeout));
        co_await timer.async_wait(use_nothrow);
        // No early co_return here (GCC 12 miscompiles them in small coroutines).
        if (resume_->answered()) co_await io::wait_forever();
    }

    verdict connect_failed(const std::string& what, error_code ec) {
        const exit_code code = connect_exit_code(ec);
        // TLS and auth failures do not heal by retrying.
        if (cfg_.reconnect && code == exit_code::connect_failed) return {std::nullopt, what};
        spdlog::error("{}", what);
        return exit_with(code);
    }

    // Standard output failed: nothing more to do (a closed pipe, e.g. `| head`, is no error).
    std::optional<verdict> output_failed() {
        const auto& ec = sink_.output_error();
        if (!ec) return std::nullopt;
        if (ec == std::errc::broken_pipe) return exit_with(exit_code::ok);
        spdlog::error("cannot write to standard output: {}", ec.message());
        return exit_with(exit_code::failure);
    }

    // The peer closed at a frame boundary.
    verdict closed_by_peer() {
        if (cfg_.reconnect) return {std::nullopt, name_ + " closed the connection"};
        if (cfg_.count != 0 && sink_.messages() < cfg_.count) {
            // Asked for N and got fewer: a script must be able to tell.
            spdlog::error("{} closed the connection after {} of {} messages (--count)", name_,
                          sink_.messages(), cfg_.count);
            return exit_with(exit_code::failure);
        }
        spdlog::info("{} closed the connection after {} messages", name_, sink_.messages());
        return exit_with(exit_code::ok);
    }

    // The connection broke, timed out, or the peer sent what cannot be decoded: only a lost
    // connection is worth another attempt.
    verdict broken(const io::read_result& res) {
        const auto code = exit_code_for(res.ec);
        const bool retryable = code == exit_code::truncated || code == exit_code::failure;
        if (cfg_.reconnect && retryable) return {std::nullopt, name_ + ": " + res.message};
        if (code == exit_code::timed_out) {
            spdlog::error("{}: {} (--timeout)", name_, res.message);
        } else if (code == exit_code::malformed_header && cfg_.codec.unit == "bytes" &&
                   (res.ec == errc::header_non_ascii || sink_.saw_non_ascii())) {
            // UTF-8 bytes where a header belongs: the peer's header counted characters (Python's
            // len(str), as the tutorial's server.py does), so the payload ran into it.
            spdlog::error("{}: {}; if the peer counts characters rather than bytes (Python's "
                          "len(str) on non-ASCII text), use --length-unit code-points",
                          name_, res.message);
        } else {
            spdlog::error("{}: {}", name_, res.message);
        }
        return exit_with(code);
    }

    asio::awaitable<void> wait_to_retry(const std::string& why, unsigned next_attempt) {
        const auto delay = delays_.next();
        spdlog::warn("{}; reconnecting in {:.2f}s (attempt {})", why, seconds(delay),
                     next_attempt);
        asio::steady_timer timer(ex_, delay);
        co_await timer.async_wait(asio::use_awaitable);
    }

    const connect_config& cfg_;
    output_sink& sink_;
    io::frame_writer* writer_;
    resume_reader* resume_;
    asio::any_io_executor ex_;
    const endpoint target_;
    const std::string name_;
    std::string refused_;  // --auth cert: why the server refused our certificate (this connection)
    std::vector<char> buffer_;
    io::backoff delays_;
};

asio::awaitable<exit_code> run_connect(const connect_config& cfg, output_sink& sink,
                                       io::frame_writer* writer, resume_reader* resume) {
    connect_loop loop(cfg, sink, writer, resume, co_await asio::this_coro::executor);
    co_return co_await loop.run();
}

}  // namespace

command_runner register_connect(CLI::App& app) {
    auto cfg = std::make_shared<connect_config>();
    auto* cmd = app.add_subcommand(
        "connect",
        "Connect to HOST:PORT and print every message received, however the bytes are chunked");
    cmd->add_option("target", cfg->target, "Where to connect: HOST:PORT or [IPv6]:PORT")
        ->required()
        ->check(endpoint_validator());
    cmd->add_option("-o,--output", cfg->format_name,
                    "lines: each payload and a newline; raw: payloads only, concatenated "
                    "(streamed, any size); framed: the frames as received; json: one object "
                    "per line {seq, length, time, text|base64}")
        ->check(CLI::IsMember({"lines", "raw", "framed", "json"}, CLI::ignore_case))
        ->default_val(cfg->format_name);
    add_size_option(*cmd, "--buffer", cfg->buffer_size,
                    "Bytes per socket read (16 works; big is fast)")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{64} << 20));
    cmd->add_option("-n,--count", cfg->count, "Exit after N messages (0: no limit)")
        ->default_val(0);
    add_seconds_option(*cmd, "--timeout", cfg->timeout,
                       "Exit with code 7 when nothing arrives for SECONDS (0: wait forever)");
    add_seconds_option(*cmd, "--connect-timeout", cfg->connect_timeout,
                       "Give up connecting after SECONDS");
    cmd->add_flag("--send", cfg->send,
                  "Also send each line of standard input as a message on the same connection; "
                  "at end of input, keep the connection open and keep reading");
    cmd->add_flag("--half-close", cfg->half_close,
                  "With --send: at end of input, shut down the sending side (the peer sees end "
                  "of stream). Off by default: framecast serve takes that as the client leaving")
        ->needs("--send");
    cmd->add_flag("--reconnect", cfg->reconnect,
                  "When the connection fails or ends, reconnect with exponential backoff and "
                  "jitter (malformed input and --timeout still end the program)");
    add_seconds_option(*cmd, "--reconnect-max", cfg->reconnect_max,
                       "Longest delay between reconnection attempts");
    auto* resume = cmd->add_flag(
        "--resume", cfg->resume,
        "Ask a 'serve --resume' server for what was missed (docs/resume.md): on every "
        "connection send the last offset received; get the backlog, then the live stream, "
        "nothing missed or repeated. A loss (outside the server's window, a server restart) is "
        "reported on stderr and, with -o json, as an event. Every -o format works; -o json "
        "shows each message's offset. Use with --reconnect");
    resume->excludes(cmd->get_option("--send"));
    cmd->add_option("--offset-file", cfg->offset_file,
                    "--resume: keep the position in FILE ('EPOCH LAST'), read at start and "
                    "written after the output is flushed, so a restarted client resumes too")
        ->needs(resume);
    cmd->add_flag("--no-gap", cfg->no_gap,
                  "--resume: exit with code 12 at the first loss instead of going on")
        ->needs(resume);
    cmd->add_flag("--line-buffered", cfg->line_buffered,
                  "Write each message to stdout as it arrives (default when stdout is a terminal)");
    add_codec_options(*cmd, cfg->codec, true);
    add_security_options(*cmd);
    add_verbosity_flags(*cmd, cfg->verbosity);

    return [cfg] {
        setup_logging(cfg->verbosity);
        cfg->format = output_format_of(cfg->format_name);
        const bool flush_each = cfg->line_buffered || ::isatty(STDOUT_FILENO);
        output_sink sink(cfg->format, cfg->count, flush_each);
        resume_position position;
        std::unique_ptr<resume_reader> resume;
        if (cfg->resume) {
            sink.frame_with(cfg->codec.options());
            std::string error;
            if (!cfg->offset_file.empty() && !load_offset_file(cfg->offset_file, position, error)) {
                spdlog::error("{}", error);
                return exit_code::usage;
            }
            resume = std::make_unique<resume_reader>(sink, position, cfg->no_gap,
                                                     cfg->offset_file, cfg->target);
        }

        std::shared_ptr<io::send_queue> queue;
        if (cfg->send) queue = std::make_shared<io::send_queue>(cfg->codec.options());

        return run_io(
            [&](asio::io_context& io) -> asio::awaitable<exit_code> {
                if (!queue) co_return co_await run_connect(*cfg, sink, nullptr, resume.get());
                io::frame_writer writer(io.get_executor(), queue);
                // stdin may block forever: the thread is detached and owns what it touches.
                std::thread([queue] {
                    std::string what;
                    if (auto ec = io::queue_lines(STDIN_FILENO, *queue, what)) {
                        spdlog::error("{}{}", what, flag_hint(ec));
                    }
                }).detach();
                co_return co_await run_connect(*cfg, sink, &writer, nullptr);
            },
            [&sink, &resume] {
                sink.flush();
                if (resume) resume->save();
            });
    };
}

}  // namespace framecast::app
