// framecast sub HOST:PORT PATTERN...: subscribe to channel patterns on a `serve --channels`
// server and print each delivery with its channel, until --count deliveries or the server
// closes. A refused pattern is an error (exit 1), printed with the server's notice.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "channel_client.hpp"
#include "sub_resume.hpp"
#include "framecast/io/backoff.hpp"
#include "cli.hpp"
#include "client_security.hpp"
#include "cert_refusal.hpp"
#include "ws_target.hpp"
#include "client_options.hpp"
#include "framecast/io/json.hpp"

namespace framecast::app {
namespace {

enum class sub_format { lines, json, framed, raw };

struct sub_config {
    std::string target;
    std::vector<std::string> patterns;
    std::string format_name = "lines";
    std::uint64_t count = 0;
    double connect_timeout = 10;
    codec_flags codec;
    int verbosity = 0;
    bool resume = false;
    bool reconnect = false;
    double reconnect_max = 30;
    std::string offset_file;
    bool no_gap = false;
};

// Deliveries as text on stdout, written in big pieces (and whenever the socket goes quiet).
class printer {
public:
    printer(sub_format f, const codec_options& codec) : format_(f), codec_(codec) {}

    // `offset`: the delivery's offset in its channel (sub --resume), 0 when none.
    void add(std::string_view channel, std::string_view payload, std::uint64_t offset) {
        switch (format_) {
            case sub_format::lines:
                out_.append(channel).append(" ").append(payload) += '\n';
                break;
            case sub_format::json:
                out_ += "{\"channel\":\"";
                io::append_json_string(out_, channel);
                out_ += '"';
                if (offset != 0) out_ += ",\"offset\":" + std::to_string(offset);
                out_ += count_code_points(payload) ? ",\"payload\":\"" : ",\"payload_bytes\":\"";
                if (count_code_points(payload)) {
                    io::append_json_string(out_, payload);
                } else {
                    out_ += escape_bytes(payload);  // not UTF-8: Python-style \xNN escapes
                }
                out_ += "\"}\n";
                break;
            case sub_format::framed:
                append_frame(out_, channel, codec_);
                append_frame(out_, payload, codec_);
                break;
            case sub_format::raw: out_.append(payload); break;
        }
        if (out_.size() >= 64 * 1024) flush();
    }
    // A JSON event line (sub --resume: a gap, an epoch change), in order with the deliveries.
    void event(const std::string& line) { out_.append(line) += '\n'; }
    bool flush() {
        if (!out_.empty() && std::fwrite(out_.data(), 1, out_.size(), stdout) != out_.size()) {
            failed_ = true;
        }
        out_.clear();
        if (std::fflush(stdout) != 0) failed_ = true;
        return !failed_;
    }
    bool failed() const noexcept { return failed_; }

private:
    sub_format format_;
    codec_options codec_;
    std::string out_;
    bool failed_ = false;
};

// One connection: subscribes (after the RESUME commands with --resume), prints deliveries.
// `done` when the program should end with `code`; otherwise (--reconnect) `why` says what broke.
struct attempt {
    bool done = false;
    exit_code code = exit_code::ok;
    std::string why;
};

asio::awaitable<attempt> sub_once(const sub_config& cfg, printer& out, std::uint64_t& deliveries,
                                  channel_positions* positions) {
    auto ex = co_await asio::this_coro::executor;
    const endpoint target = parse_endpoint(cfg.target);
    const std::string name = target.to_string();
    const bool retry = cfg.reconnect;
    io::client_stream socket(ex);
    std::string what;
    const error_code failed = co_await connect_to(socket, target, to_duration(cfg.connect_timeout),
                                                  what, cfg.codec.options());
    if (failed) {
        if (retry) co_return attempt{.why = what};
        spdlog::error("{}", what);
        co_return attempt{true, connect_exit_code(failed), {}};
    }
    const auto codec = cfg.codec.options();
    std::string commands = positions ? positions->commands(codec) : std::string();
    for (const auto& p : cfg.patterns) {
        if (auto ec = append_frame(commands, "SUB " + p, codec)) {
            spdlog::error("cannot send 'SUB {}': {}", p, ec.message());
            co_return attempt{true, exit_code_for(ec), {}};
        }
    }
    auto [wec, wn] = co_await socket.write(asio::buffer(commands));
    if (wec) {
        if (retry) co_return attempt{.why = name + ": sending the subscriptions failed"};
        spdlog::error("{}: sending the subscriptions failed: {}", name, wec.message());
        co_return attempt{true, exit_code::failure, {}};
    }

    std::size_t acked = 0;
    bool refused = false;
    bool counted = false;
    pair_reader reader(
        [&](std::string_view channel, std::string_view payload) {
            std::uint64_t offset = 0;
            if (positions) {
                const auto k = positions->on_pair(channel, payload, offset);
                if (k == channel_positions::kind::stop) return false;
                if (k == channel_positions::kind::consumed) return true;
            }
            if (channel == sys_ok) {
                if (++acked == cfg.patterns.size()) {
                    spdlog::info("subscribed to {} pattern{} on {}", acked, acked == 1 ? "" : "s",
                                 name);
                }
                return true;
            }
            if (channel.starts_with("$")) {
                spdlog::error("{}: {} {}", name, escape_controls(channel, true),
                              escape_controls(payload, true));
                if (channel == sys_error) refused = true;
                return !refused;
            }
            out.add(channel, payload, offset);
            ++deliveries;
            counted = cfg.count != 0 && deliveries >= cfg.count;
            return !counted && !out.failed();
        },
        [&] {
            out.flush();
            if (positions) positions->save(false);
        });
    decoder dec(codec, decode_mode::whole);
    std::vector<char> buffer(256 * 1024);
    cert_refusal_watch watch(reader);
    auto r = co_await io::read_frames(socket, dec, buffer, watch);
    out.flush();
    if (positions) positions->save(true);
    if (!watch.refused().empty()) co_return attempt{true, watch.report(name), {}};
    if (out.failed()) {
        spdlog::error("writing to standard output failed");
        co_return attempt{true, exit_code::failure, {}};
    }
    if (positions && positions->failure()) {
        spdlog::error("{}", positions->failure_text());
        co_return attempt{true, *positions->failure(), {}};
    }
    if (refused) co_return attempt{true, exit_code::failure, {}};
    if (counted) co_return attempt{true, exit_code::ok, {}};
    if (r.ec) {
        if (retry) co_return attempt{.why = name + ": " + r.message};
        spdlog::error("{}: {}", name, r.message);
        co_return attempt{true, exit_code_for(r.ec), {}};
    }
    if (retry) co_return attempt{.why = name + " closed the connection"};
    if (cfg.count != 0 && deliveries < cfg.count) {
        spdlog::error("{} closed the connection after {} of {} deliveries", name, deliveries,
                      cfg.count);
        co_return attempt{true, exit_code::failure, {}};
    }
    co_return attempt{true, exit_code::ok, {}};
}

asio::awaitable<exit_code> run_sub(const sub_config& cfg, sub_format format) {
    auto ex = co_await asio::this_coro::executor;
    printer out(format, cfg.codec.options());
    std::unique_ptr<channel_positions> positions;
    if (cfg.resume) {
        positions = std::make_unique<channel_positions>(
            cfg.no_gap, cfg.offset_file, parse_endpoint(cfg.target).to_string(),
            [&out, format](const std::string& e) {
                if (format == sub_format::json) out.event(e);
            },
            [&out] { out.flush(); });
        std::string error;
        if (!positions->load(error)) {
            spdlog::error("{}", error);
            co_return exit_code::usage;
        }
    }
    io::backoff delays({.min = std::chrono::milliseconds(100),
                        .max = to_duration(cfg.reconnect_max)});
    std::uint64_t deliveries = 0;
    for (unsigned n = 1;; ++n) {
        const std::uint64_t before = deliveries;
        const attempt a = co_await sub_once(cfg, out, deliveries, positions.get());
        if (a.done) co_return a.code;
        if (deliveries != before) delays.reset();  // it worked for a while: start small again
        const auto delay = delays.next();
        spdlog::warn("{}; reconnecting in {:.2f}s (attempt {})", a.why,
                     std::chrono::duration<double>(delay).count(), n + 1);
        asio::steady_timer timer(ex, delay);
        co_await timer.async_wait(use_nothrow);
    }
}

}  // namespace

command_runner register_sub(CLI::App& app) {
    auto cfg = std::make_shared<sub_config>();
    auto* cmd = app.add_subcommand(
        "sub",
        "Subscribe to channel PATTERNs on a 'serve --channels' server and print each delivery "
        "with its channel (docs/channels.md). Patterns are dot-separated tokens; '*' matches "
        "one token, '>' all the rest (quote them for the shell).");
    cmd->add_option("target", cfg->target, "Where to connect: HOST:PORT or [IPv6]:PORT")
        ->required()
        ->check(endpoint_validator());
    cmd->add_option("patterns", cfg->patterns, "Channel patterns, e.g. prices.eu 'news.*' 'log.>'")
        ->required();
    cmd->add_option("-o,--output", cfg->format_name,
                    "lines: 'CHANNEL PAYLOAD' per delivery (a channel has no spaces); json: one "
                    "object per line with 'channel' and 'payload' keys ('payload_bytes' with "
                    "\\xNN escapes when the payload is not UTF-8); framed: the two frames as on "
                    "the wire; raw: the payloads only, back to back")
        ->check(CLI::IsMember({"lines", "json", "framed", "raw"}))
        ->capture_default_str();
    cmd->add_option("-n,--count", cfg->count,
                    "Exit 0 after N deliveries (non-zero if the server closes before). "
                    "0: until the server closes");
    add_seconds_option(*cmd, "--connect-timeout", cfg->connect_timeout,
                       "Give up connecting after SECONDS");
    auto* resume = cmd->add_flag(
        "--resume", cfg->resume,
        "Resume per channel (server: serve --channels --resume; docs/resume.md#channels): "
        "every delivery's offset in its channel is kept, and on each connection the server "
        "sends what was missed of every channel with a position, and of every matching channel "
        "first published while it was away. Losses are reported (stderr; an event with -o "
        "json); -o json shows each delivery's offset. Use with --reconnect");
    cmd->add_flag("--reconnect", cfg->reconnect,
                  "When the connection fails or ends, reconnect with exponential backoff and "
                  "subscribe again (with --resume: nothing missed)");
    add_seconds_option(*cmd, "--reconnect-max", cfg->reconnect_max,
                       "Longest delay between reconnection attempts");
    cmd->add_option("--offset-file", cfg->offset_file,
                    "--resume: keep the positions in FILE across runs (one line per channel: "
                    "EPOCH LAST CHANNEL, and 'EPOCH SEQ *' for the server-wide sequence), "
                    "written after the output is flushed")
        ->needs(resume);
    cmd->add_flag("--no-gap", cfg->no_gap,
                  "--resume: stop with exit code 12 at the first loss (outside the window, a "
                  "new epoch) instead of reporting it and going on")
        ->needs(resume);
    add_codec_options(*cmd, cfg->codec, true);
    add_security_options(*cmd);
    add_verbosity_flags(*cmd, cfg->verbosity);
    return [cfg] {
        setup_logging(cfg->verbosity);
        const auto f = cfg->format_name == "json"     ? sub_format::json
                       : cfg->format_name == "framed" ? sub_format::framed
                       : cfg->format_name == "raw"    ? sub_format::raw
                                                      : sub_format::lines;
        return run_io([&](asio::io_context&) { return run_sub(*cfg, f); });
    };
}

}  // namespace framecast::app
