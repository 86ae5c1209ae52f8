// framecast connect HOST:PORT: print every message a peer sends, framed correctly whatever the
// chunking of the byte stream.
#include <cerrno>
#include <chrono>
#include <ctime>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <unistd.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli.hpp"
#include "client_options.hpp"
#include "framecast/io/client.hpp"

namespace framecast::app {
namespace {

using namespace asio::experimental::awaitable_operators;

enum class output_format { lines, raw, framed, json };

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
    codec_flags codec;
    int verbosity = 0;
};

// Appends `s` to `out` as the inside of a JSON string (RFC 8259): quote, backslash and control
// characters escaped, everything else (UTF-8 included, already validated) as is.
void append_json_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::size_t run = 0;  // start of the bytes not yet copied
    for (std::size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out.append(s.data() + run, i - run);
        run = i + 1;
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 15];
        }
    }
    out.append(s.data() + run, s.size() - run);
}

void append_base64(std::string& out, std::string_view s) {
    static constexpr char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t i = 0;
    for (; i + 3 <= s.size(); i += 3) {
        unsigned v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
        out += abc[v >> 18];
        out += abc[(v >> 12) & 63];
        out += abc[(v >> 6) & 63];
        out += abc[v & 63];
    }
    if (std::size_t left = s.size() - i; left > 0) {
        unsigned v = p[i] << 16;
        if (left == 2) v |= p[i + 1] << 8;
        out += abc[v >> 18];
        out += abc[(v >> 12) & 63];
        out += left == 2 ? abc[(v >> 6) & 63] : '=';
        out += '=';
    }
}

// Writes all of `data` to a file descriptor, waiting out EAGAIN on a non-blocking one.
bool write_all(int fd, const char* data, std::size_t size, error_code& ec) {
    while (size > 0) {
        ssize_t n = ::write(fd, data, size);
        if (n >= 0) {
            data += n;
            size -= static_cast<std::size_t>(n);
            continue;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pollfd pfd{fd, POLLOUT, 0};
            ::poll(&pfd, 1, -1);
            continue;
        }
        ec.assign(errno, boost::system::system_category());
        return false;
    }
    return true;
}

// Formats what arrives into one output buffer and writes it to stdout in big pieces: when the
// buffer is full, and when the socket goes quiet (so a slow stream still shows up at once).
class output_sink final : public io::frame_handler {
public:
    output_sink(output_format format, std::uint64_t count, bool flush_each)
        : format_(format), count_(count), flush_each_(flush_each) {
        out_.reserve(flush_at + 64 * 1024);
    }

    std::uint64_t messages() const noexcept { return seq_; }
    const error_code& output_error() const noexcept { return output_error_; }
    bool count_reached() const noexcept { return count_ != 0 && seq_ >= count_; }

    void on_read(std::size_t) override { stamp_valid_ = false; }

    bool on_frame(std::string_view payload) override {
        if (format_ == output_format::json) {
            append_json(payload);
        } else {
            out_.append(payload);
            out_ += '\n';
        }
        return message_done();
    }

    bool on_begin(std::uint64_t, std::string_view header) override {
        if (format_ == output_format::framed) out_.append(header);
        return true;
    }

    bool on_data(std::string_view piece) override {
        if (piece.size() >= flush_at) {  // a big piece of a big message: no copy
            flush();
            write(piece);
        } else {
            out_.append(piece);
            if (out_.size() >= flush_at) flush();
        }
        return !output_error_;
    }

    bool on_end() override { return message_done(); }

    void on_idle() override { flush(); }

    void flush() {
        if (!out_.empty()) write(out_);
        out_.clear();
    }

private:
    static constexpr std::size_t flush_at = 256 * 1024;

    bool message_done() {
        ++seq_;
        if (flush_each_ || out_.size() >= flush_at) flush();
        return !output_error_ && !count_reached();
    }

    void write(std::string_view bytes) {
        if (output_error_) return;
        write_all(STDOUT_FILENO, bytes.data(), bytes.size(), output_error_);
    }

    void append_json(std::string_view payload) {
        if (!stamp_valid_) {
            auto now = std::chrono::system_clock::now();
            auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch())
                          .count();
            std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
            std::tm tm{};
            gmtime_r(&secs, &tm);
            char text[40];
            std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
            stamp_ = fmt::format("{}.{:06}Z", text, us % 1'000'000);
            stamp_valid_ = true;
        }
        fmt::format_to(std::back_inserter(out_), R"({{"seq":{},"length":{},"time":"{}",)", seq_ + 1,
                       payload.size(), stamp_);
        if (count_code_points(payload)) {
            out_ += R"("text":")";
            append_json_string(out_, payload);
        } else {
            out_ += R"("base64":")";
            append_base64(out_, payload);
        }
        out_ += "\"}\n";
    }

    output_format format_;
    std::uint64_t count_;
    bool flush_each_;
    std::uint64_t seq_ = 0;
    std::string out_;
    std::string stamp_;
    bool stamp_valid_ = false;
    error_code output_error_;
};

// Exponential backoff with jitter: each delay is a random point in the upper half of a window
// that doubles from 100 ms up to `max`, so reconnecting clients do not arrive in lockstep.
class backoff {
public:
    explicit backoff(io::duration max) : max_(max) {}
    io::duration next() {
        auto window = window_;
        window_ = std::min(window_ * 2, max_);
        std::uniform_real_distribution<double> jitter(0.5, 1.0);
        return std::chrono::duration_cast<io::duration>(window * jitter(random_));
    }
    void reset() { window_ = initial; }

private:
    static constexpr io::duration initial = std::chrono::milliseconds(100);
    io::duration max_;
    io::duration window_ = std::min(initial, max_);
    std::mt19937 random_{std::random_device{}()};
};

double seconds(io::duration d) { return std::chrono::duration<double>(d).count(); }

asio::awaitable<void> send_while_connected(io::frame_writer& writer, io::tcp::socket& socket,
                                          bool half_close) {
    // By default no half-close at end of input: framecast serve (like the tutorial's servers)
    // takes the end of a client's stream as the client leaving, and would stop sending to us.
    auto ec = co_await writer.run(socket, half_close);
    if (ec && ec != asio::error::operation_aborted) {
        spdlog::warn("sending failed: {}", ec.message());
    }
    co_await io::wait_forever();  // finishing must not end the reading side
}

asio::awaitable<exit_code> run_connect(const connect_config& cfg, output_sink& sink,
                                       io::frame_writer* writer) {
    auto ex = co_await asio::this_coro::executor;
    const endpoint target = parse_endpoint(cfg.target);
    const std::string name = target.to_string();
    const auto mode = cfg.format == output_format::raw || cfg.format == output_format::framed
                          ? decode_mode::streaming
                          : decode_mode::whole;
    std::vector<char> buffer(cfg.buffer_size);
    backoff delays(to_duration(cfg.reconnect_max));
    io::read_options read_opts{to_duration(cfg.timeout)};

    for (unsigned attempt = 1;; ++attempt) {
        auto retry = [&](const std::string& why) -> asio::awaitable<void> {
            auto delay = delays.next();
            spdlog::warn("{}; reconnecting in {:.2f}s (attempt {})", why, seconds(delay),
                         attempt + 1);
            asio::steady_timer timer(ex, delay);
            co_await timer.async_wait(asio::use_awaitable);
        };

        io::tcp::socket socket(ex);
        std::string what;
        if (auto ec = co_await io::async_connect(socket, target.host, target.port,
                                                 to_duration(cfg.connect_timeout), what)) {
            if (!cfg.reconnect) {
                spdlog::error("{}", what);
                co_return exit_code::connect_failed;
            }
            co_await retry(what);
            continue;
        }
        spdlog::info("connected to {}", name);

        decoder dec(cfg.codec.options(), mode);
        // One connection: keep the gathering buffer of a large frame for the next one.
        dec.retain_capacity(dec.options().max_message);
        io::read_result res;
        if (writer) {
            auto outcome = co_await (io::read_frames(socket, dec, buffer, sink, read_opts) ||
                                     send_while_connected(*writer, socket, cfg.half_close));
            res = std::get<0>(std::move(outcome));
        } else {
            res = co_await io::read_frames(socket, dec, buffer, sink, read_opts);
        }
        sink.flush();
        if (auto& ec = sink.output_error()) {
            if (ec == std::errc::broken_pipe) co_return exit_code::ok;  // e.g. `| head`
            spdlog::error("cannot write to standard output: {}", ec.message());
            co_return exit_code::failure;
        }
        if (res.stopped) co_return exit_code::ok;
        if (res.bytes > 0) delays.reset();

        if (!res.ec) {
            if (!cfg.reconnect) {
                if (cfg.count != 0 && sink.messages() < cfg.count) {
                    // Asked for N and got fewer: a script must be able to tell.
                    spdlog::error("{} closed the connection after {} of {} messages (--count)",
                                  name, sink.messages(), cfg.count);
                    co_return exit_code::failure;
                }
                spdlog::info("{} closed the connection after {} messages", name, sink.messages());
                co_return exit_code::ok;
            }
            co_await retry(name + " closed the connection");
            continue;
        }
        auto code = exit_code_for(res.ec);
        const bool retryable = code == exit_code::truncated || code == exit_code::failure;
        if (cfg.reconnect && retryable) {
            co_await retry(name + ": " + res.message);
            continue;
        }
        if (code == exit_code::timed_out) {
            spdlog::error("{}: {} (--timeout)", name, res.message);
        } else {
            spdlog::error("{}: {}", name, res.message);
        }
        co_return code;
    }
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
    cmd->add_flag("--line-buffered", cfg->line_buffered,
                  "Write each message to stdout as it arrives (default when stdout is a terminal)");
    add_codec_options(*cmd, cfg->codec, true);
    add_verbosity_flags(*cmd, cfg->verbosity);

    return [cfg] {
        setup_logging(cfg->verbosity);
        cfg->format = cfg->format_name == "raw"      ? output_format::raw
                      : cfg->format_name == "framed" ? output_format::framed
                      : cfg->format_name == "json"   ? output_format::json
                                                     : output_format::lines;
        const bool flush_each = cfg->line_buffered || ::isatty(STDOUT_FILENO);
        output_sink sink(cfg->format, cfg->count, flush_each);

        std::shared_ptr<io::send_queue> queue;
        if (cfg->send) queue = std::make_shared<io::send_queue>(cfg->codec.options());

        return run_io(
            [&](asio::io_context& io) -> asio::awaitable<exit_code> {
                if (!queue) co_return co_await run_connect(*cfg, sink, nullptr);
                io::frame_writer writer(io.get_executor(), queue);
                // stdin may block forever: the thread is detached and owns what it touches.
                std::thread([queue] {
                    std::string what;
                    if (io::queue_lines(STDIN_FILENO, *queue, what)) spdlog::error("{}", what);
                }).detach();
                co_return co_await run_connect(*cfg, sink, &writer);
            },
            [&sink] { sink.flush(); });
    };
}

}  // namespace framecast::app
