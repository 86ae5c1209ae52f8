#include "publish_client.hpp"

#include "framecast/io/protocol_words.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cert_refusal.hpp"
#include "client_options.hpp"
#include "framecast/io/backoff.hpp"
#include "resend_buffer.hpp"
#include "ws_target.hpp"

namespace framecast::app {

using io::is_protocol_token;
using io::parse_protocol_u64;
namespace {

using namespace asio::experimental::awaitable_operators;

std::string random_token() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

// How one connection ended: exit with a code, or try again (and why).
struct verdict {
    std::optional<exit_code> exit;
    std::string retry_because;
};

class reliable_publisher final : public io::frame_handler {
public:
    reliable_publisher(const publish_options& opts, std::shared_ptr<io::send_queue> queue,
                       asio::any_io_executor ex)
        : opts_(opts), queue_(std::move(queue)), ex_(ex), target_(parse_endpoint(opts.target)),
          name_(target_.to_string()),
          publisher_(opts.publisher.empty() ? random_token() : opts.publisher), wake_(ex),
          alive_(std::make_shared<bool>(true)), read_buffer_(64 * 1024),
          delays_({.min = std::chrono::milliseconds(100), .max = to_duration(opts.reconnect_max)}) {}

    ~reliable_publisher() override { queue_->clear_wake(); }

    asio::awaitable<exit_code> run() {
        spdlog::debug("publishing to {} as {}", name_, publisher_);
        for (unsigned attempt = 1;; ++attempt) {
            auto v = co_await one_connection();
            if (v.exit) co_return *v.exit;
            const auto delay = delays_.next();
            spdlog::warn("{}; reconnecting in {:.2f}s (attempt {}, {} messages not yet "
                         "acknowledged)", v.retry_because,
                         std::chrono::duration<double>(delay).count(), attempt + 1,
                         buffer_.held_messages());
            asio::steady_timer timer(ex_, delay);
            co_await timer.async_wait(use_nothrow);
        }
    }

    // Frames from the server: before the answer only the answer (or a refusal) matters; then
    // acknowledgements, and (pub) the notices, which come in pairs.
    bool on_frame(std::string_view payload) override {
        if (!mid_pair_) {
            if (payload.starts_with("@publish-error ")) {
                failure_ = fmt::format("{}: the server refused to take messages from publisher "
                                       "{}: {}", name_, publisher_, payload.substr(15));
                return false;
            }
            if (payload.starts_with(answer_prefix_)) return on_answer(payload.substr(answer_prefix_.size()));
            if (answered_ && payload.starts_with(ack_prefix_)) return on_ack(payload.substr(ack_prefix_.size()));
        }
        if (!answered_ || !opts_.channels) return true;  // not ours (a welcome, a broadcast)
        if (!mid_pair_) {
            channel_.assign(payload);
            mid_pair_ = true;
            return true;
        }
        mid_pair_ = false;
        if (channel_ == "$sys.error") {
            ++refusals_;
            spdlog::error("{}: {} {}", name_, channel_, escape_controls(payload, true));
        }
        return true;
    }

private:
    bool on_answer(std::string_view last_text) {
        std::uint64_t last = 0;
        if (answered_ || !parse_protocol_u64(last_text, last)) {
            failure_ = fmt::format("{}: an answer to the publish request this client does not "
                                   "understand: '{}'", name_, escape_controls(last_text, true));
            return false;
        }
        answered_ = true;
        ever_answered_ = true;
        // The server has every message up to `last`; this connection numbers from last + 1.
        buffer_.release(last);
        written_ = last;
        delays_.reset();
        spdlog::info("{}: publishing as {} from message {} on", name_, publisher_, last + 1);
        wake_.cancel();
        return true;
    }

    bool on_ack(std::string_view seq_text) {
        std::uint64_t seq = 0;
        if (!parse_protocol_u64(seq_text, seq) || seq > written_) {
            failure_ = fmt::format("{}: an acknowledgement of a message not sent: '{}'{}", name_,
                                   escape_controls(seq_text, true),
                                   opts_.channels ? " (is it a 'serve --channels' server?)" : "");
            return false;
        }
        buffer_.release(seq);
        wake_.cancel();
        return true;
    }

    asio::awaitable<verdict> one_connection() {
        io::client_stream socket(ex_);
        std::string what;
        const auto failed = co_await connect_to(socket, target_,
                                                to_duration(opts_.connect_timeout), what,
                                                opts_.codec);
        if (failed) {
            const exit_code code = connect_exit_code(failed);
            if (code == exit_code::connect_failed) co_return verdict{std::nullopt, what};
            spdlog::error("{}", what);
            co_return verdict{code, {}};
        }
        const std::string nonce = random_token();
        answer_prefix_ = "@published " + nonce + " ";
        ack_prefix_ = "@ack " + nonce + " ";
        answered_ = false;
        mid_pair_ = false;
        write_failed_ = {};
        const std::string request = encode_frame(
            fmt::format("@publish {} {} {}", nonce, publisher_, buffer_.acked() + 1), opts_.codec);
        auto [wec, n] = co_await socket.write(asio::buffer(request));
        if (wec) co_return verdict{std::nullopt, name_ + ": " + wec.message()};

        decoder dec(opts_.codec, decode_mode::whole);
        cert_refusal_watch watch(*this);
        auto outcome = co_await (io::read_frames(socket, dec, read_buffer_, watch) ||
                                 answer_deadline() || write_side(socket));
        if (!watch.refused().empty()) co_return verdict{report_cert_refusal(name_, watch.refused()), {}};
        if (!failure_.empty()) {
            spdlog::error("{}", failure_);
            co_return verdict{exit_code::failure, {}};
        }
        if (outcome.index() == 1 && ever_answered_) {
            // A server that answered before supports it: it is slow (with a backplane, the
            // answer waits for Redis), so try again, as after a broken connection.
            co_return verdict{std::nullopt, name_ + ": no answer to the publish request within " +
                                                fmt::format("{}s", opts_.connect_timeout)};
        }
        if (outcome.index() == 1) {
            spdlog::error("{}: no answer to the publish request within {}s (--connect-timeout): "
                          "is it running 'serve --publish-acks'? (a server without it takes "
                          "the request for a message)", name_, opts_.connect_timeout);
            co_return verdict{exit_code::failure, {}};
        }
        if (outcome.index() == 2) {
            if (!write_failed_) co_return verdict{finish(socket), {}};
            co_return verdict{std::nullopt, name_ + ": sending failed: " + write_failed_.message()};
        }
        const auto res = std::get<0>(std::move(outcome));
        co_return verdict{std::nullopt,
                          res.ec ? name_ + ": " + res.message : name_ + " closed the connection"};
    }

    // Everything was acknowledged: a clean close.
    exit_code finish(io::client_stream& socket) {
        socket.shutdown_send_now();
        socket.close();
        if (buffer_.skipped() > 0) {
            spdlog::info("{}: skipped {} messages the server already had from publisher {}",
                         name_, buffer_.skipped(), publisher_);
        }
        spdlog::debug("{}: all {} messages acknowledged", name_, buffer_.next() - 1);
        if (refusals_ > 0) {
            spdlog::error("{}: the server refused {} command{} (see above)", name_, refusals_,
                          refusals_ == 1 ? "" : "s");
            return exit_code::failure;
        }
        return exit_code::ok;
    }

    // Ends the connection's wait when the server does not answer the request in time.
    asio::awaitable<void> answer_deadline() {
        asio::steady_timer timer(ex_, to_duration(opts_.connect_timeout));
        co_await timer.async_wait(use_nothrow);
        // No early co_return here (GCC 12 miscompiles them in small coroutines).
        if (answered_) co_await io::wait_forever();
    }

    // Sends, after the answer, every held message after `written_`, then what the input
    // brings while the buffer has room; ends once the input is closed and all acknowledged
    // (write_failed_ clear), or when a write fails (set).
    asio::awaitable<void> write_side(io::client_stream& socket) {
        std::string out;
        // One exit at the end (GCC 12 miscompiles early co_returns in some coroutines).
        bool done = false;
        while (!done) {
            if (answered_) {
                buffer_.compact();
                take_input();
                done = input_closed_ && buffer_.held_messages() == 0;
                if (!done && written_ + 1 < buffer_.next()) {
                    out.assign(buffer_.frames_from(std::max(written_ + 1, buffer_.first_held())));
                    written_ = buffer_.next() - 1;
                    auto [ec, n] = co_await socket.write(asio::buffer(out));
                    write_failed_ = ec;
                    done = static_cast<bool>(ec);
                    continue;
                }
            }
            if (!done) {
                wake_.expires_at(std::chrono::steady_clock::time_point::max());
                co_await wake_.async_wait(use_nothrow);
                const auto state = co_await asio::this_coro::cancellation_state;
                if (state.cancelled() != asio::cancellation_type::none) {
                    write_failed_ = asio::error::operation_aborted;
                    done = true;
                }
            }
        }
    }

    // Takes what the input queued, while the resend buffer is under --max-unacked (otherwise
    // the input waits: backpressure down to the thread that reads it).
    void take_input() {
        if (input_closed_) return;
        if (buffer_.held_bytes() >= opts_.max_unacked) {
            if (!full_) {
                spdlog::info("{}: {} bytes not yet acknowledged (--max-unacked): input waits",
                             name_, buffer_.held_bytes());
            }
            full_ = true;
            return;
        }
        full_ = false;
        pending_.clear();
        const auto got = queue_->take(pending_, [ex = ex_, timer = &wake_,
                                                 alive = std::weak_ptr<bool>(alive_)] {
            asio::post(ex, [timer, alive] {
                if (alive.lock()) timer->cancel();
            });
        });
        if (got == io::send_queue::take_result::closed) input_closed_ = true;
        if (got != io::send_queue::take_result::data) return;
        split(pending_);
    }

    // Queued bytes are whole frames; every frames_per_message of them is one message.
    void split(std::string_view bytes) {
        decoder dec(opts_.codec, decode_mode::whole);
        std::span<const char> in(bytes.data(), bytes.size());
        const char* start = in.data();
        std::size_t frames = 0;
        for (;;) {
            const auto ev = dec.next(in);
            if (ev != decode_event::frame) break;
            if (++frames % opts_.frames_per_message != 0) continue;
            buffer_.append(std::string_view(start, static_cast<std::size_t>(in.data() - start)));
            start = in.data();
        }
    }

    const publish_options& opts_;
    std::shared_ptr<io::send_queue> queue_;
    asio::any_io_executor ex_;
    const endpoint target_;
    const std::string name_;
    const std::string publisher_;
    asio::steady_timer wake_;  // the writer's wait: cancelled by input, an answer, an ack
    std::shared_ptr<bool> alive_;
    std::vector<char> read_buffer_;
    io::backoff delays_;
    resend_buffer buffer_;
    std::string pending_;
    bool input_closed_ = false;
    bool full_ = false;  // the resend buffer is at --max-unacked (logged once per episode)
    // This connection.
    std::string answer_prefix_, ack_prefix_;
    bool answered_ = false;
    bool ever_answered_ = false;  // by some server: a later silence is slowness, not a refusal
    std::uint64_t written_ = 0;  // the number of the last message written on it
    error_code write_failed_;
    bool mid_pair_ = false;
    std::string channel_;
    // For the whole run.
    std::string failure_;
    std::uint64_t refusals_ = 0;
};

}  // namespace

void add_publish_options(CLI::App& cmd, bool& reconnect, publish_options& opts) {
    auto* flag = cmd.add_flag(
        "--reconnect", reconnect,
        "Publishing that survives reconnects (docs/resume.md#publishing; the server runs "
        "--publish-acks): when the connection fails or ends, connect again with backoff and "
        "resend what the server had not acknowledged; the server drops what it already had, "
        "so subscribers see every message once. Exit 0 once every message is acknowledged");
    add_seconds_option(cmd, "--reconnect-max", opts.reconnect_max,
                       "--reconnect: longest delay between reconnection attempts")
        ->needs(flag);
    cmd.add_option("--publisher-id", opts.publisher,
                   "--reconnect: who this publisher is to the server (1-64 of [A-Za-z0-9_-]; "
                   "default: random per run). Give the same one to a rerun with the same input "
                   "and the server skips what it already has")
        ->check(validator_from(
            [](const std::string& s) {
                if (!is_protocol_token(s)) {
                    throw CLI::ValidationError("'" + s + "': 1-64 characters of [A-Za-z0-9_-]");
                }
            },
            "ID"))
        ->needs(flag);
    add_size_option(cmd, "--max-unacked", opts.max_unacked,
                    "--reconnect: bytes of messages held until the server acknowledges them; "
                    "when full, the input waits (default 8MiB)")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40))
        ->needs(flag);
}

asio::awaitable<exit_code> run_reliable_publish(const publish_options& opts,
                                                std::shared_ptr<io::send_queue> queue) {
    reliable_publisher p(opts, std::move(queue), co_await asio::this_coro::executor);
    co_return co_await p.run();
}

}  // namespace framecast::app
