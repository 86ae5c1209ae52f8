#include "framecast/io/client.hpp"

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "framecast/io/endpoint.hpp"
#include "framecast/io/line_splitter.hpp"

namespace framecast::io {
namespace {

using namespace asio::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;
constexpr auto use = use_nothrow;

std::string seconds_text(duration d) {
    char text[32];
    std::snprintf(text, sizeof text, "%gs", std::chrono::duration<double>(d).count());
    return text;
}

asio::awaitable<bool> cancelled() {
    auto state = co_await asio::this_coro::cancellation_state;
    co_return state.cancelled() != asio::cancellation_type::none;
}

// Ends when `last_read + timeout` has passed; the reader moves `last_read` forward on every read,
// so the reader's hot path never touches a timer.
asio::awaitable<void> idle_watchdog(const clock::time_point& last_read, duration timeout) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        auto deadline = last_read + timeout;
        if (clock::now() >= deadline) co_return;
        timer.expires_at(deadline);
        auto [ec] = co_await timer.async_wait(use);
        if (ec) co_return;  // cancelled: the reader finished first
    }
}

// One connection's reader: tries a read, and only waits when there is nothing; decodes what
// came and hands the events to the handler; ends at the peer's close, an error, or the
// handler's stop (`res` then says which).
class reader {
public:
    reader(client_stream& stream, decoder& dec, std::span<char> buffer, frame_handler& handler,
           clock::time_point* last_read)
        : stream_(stream), dec_(dec), buffer_(buffer), handler_(handler), last_read_(last_read) {}

    asio::awaitable<read_result> run() {
        error_code ec;
        for (;;) {
            // Inside a payload with at least a buffer's worth still to come: read it straight
            // into the decoder (same read size), so a large frame is not copied a second time.
            const std::span<char> space = dec_.payload_space();
            const bool direct = space.size() >= buffer_.size();
            // Try the read first and only wait when there is nothing: a busy stream costs one
            // system call per buffer, and the handler gets to flush exactly when it goes quiet.
            const std::size_t n = stream_.try_read(
                {direct ? space.data() : buffer_.data(), buffer_.size()}, ec);
            if (ec == asio::error::would_block) {
                const bool readable = co_await wait_readable();
                if (!readable) co_return res_;
                continue;
            }
            if (ec) co_return ended(ec);
            received(n);
            if (!(direct ? decode_in_place(n) : decode(n))) co_return res_;
            // A peer that never pauses must not starve the rest of the io_context (the writer
            // that sends, timers): yield now and then.
            if (++reads_in_a_row_ == 64) {
                reads_in_a_row_ = 0;
                const bool go_on = co_await yield_turn();
                if (!go_on) co_return res_;
            }
        }
    }

private:
    // The socket has nothing right now: let the handler flush, then wait for more.
    asio::awaitable<bool> wait_readable() {
        handler_.on_idle();
        reads_in_a_row_ = 0;
        const error_code ec = co_await stream_.wait_readable();
        if (ec) fail(ec, "connection lost: " + ec.message());
        co_return !ec;
    }

    // The read failed: the peer closed (at a frame boundary or not), or the connection broke.
    read_result ended(const error_code& ec) {
        if (ec == asio::error::eof) {
            if (dec_.finish()) fail(dec_.error(), dec_.error_message());
        } else if (!dec_.at_frame_boundary() && dec_.finish()) {
            // Lost in the middle of a frame: say so, as for a close there.
            fail(dec_.error(), ec.message() + ": " + dec_.error_message());
        } else {
            fail(ec, "connection lost: " + ec.message());
        }
        return res_;
    }

    void received(std::size_t n) {
        if (last_read_) *last_read_ = clock::now();
        res_.bytes += n;
        handler_.on_read(n);
    }

    // `n` bytes were read straight into the decoder's payload space.
    bool decode_in_place(std::size_t n) {
        switch (dec_.commit(n)) {
            case decode_event::frame:
                return deliver(handler_.on_frame(dec_.payload()));
            case decode_event::error:
                fail(dec_.error(), dec_.error_message());
                return false;
            default:
                return true;
        }
    }

    // `n` bytes are in the buffer: decode all of them.
    bool decode(std::size_t n) {
        std::span<const char> in(buffer_.data(), n);
        for (;;) {
            const char* from = in.data();
            const auto ev = dec_.next(in);
            const auto consumed = static_cast<std::size_t>(in.data() - from);
            switch (ev) {
                case decode_event::need_more:
                    keep_header_bytes(from, consumed);
                    return true;
                case decode_event::frame:
                    header_fill_ = 0;
                    if (!deliver(handler_.on_frame(dec_.payload()))) return false;
                    break;
                case decode_event::begin:
                    keep_header_bytes(from, consumed);
                    if (!deliver(handler_.on_begin(dec_.length(), {header_.data(), header_fill_}))) {
                        return false;
                    }
                    header_fill_ = 0;
                    break;
                case decode_event::data:
                    if (!deliver(handler_.on_data(dec_.payload()))) return false;
                    break;
                case decode_event::end:
                    if (!deliver(handler_.on_end())) return false;
                    break;
                case decode_event::error:
                    fail(dec_.error(), dec_.error_message());
                    return false;
            }
        }
    }

    // Streaming mode: the header bytes of the frame being decoded, for on_begin().
    void keep_header_bytes(const char* from, std::size_t n) {
        if (header_fill_ + n > header_.size()) return;
        std::memcpy(header_.data() + header_fill_, from, n);
        header_fill_ += n;
    }

    // What a handler returned: false stops the reader.
    bool deliver(bool go_on) {
        if (!go_on) res_.stopped = true;
        return go_on;
    }

    void fail(error_code ec, std::string message) {
        res_.ec = ec;
        res_.message = std::move(message);
    }

    // Lets the other work on the io_context run. False when cancelled meanwhile.
    asio::awaitable<bool> yield_turn() {
        co_await asio::post(stream_.get_executor(), asio::use_awaitable);
        const bool cancel = co_await cancelled();
        if (cancel) fail(asio::error::operation_aborted, "cancelled");
        co_return !cancel;
    }

    client_stream& stream_;
    decoder& dec_;
    std::span<char> buffer_;
    frame_handler& handler_;
    clock::time_point* last_read_;
    read_result res_;
    std::array<char, max_header_size> header_{};
    std::size_t header_fill_ = 0;
    unsigned reads_in_a_row_ = 0;
};

asio::awaitable<read_result> read_loop(client_stream& stream, decoder& dec,
                                       std::span<char> buffer, frame_handler& handler,
                                       clock::time_point* last_read) {
    reader r(stream, dec, buffer, handler, last_read);
    co_return co_await r.run();
}

}  // namespace

asio::awaitable<error_code> async_connect(tcp::socket& socket, std::string host,
                                               std::uint16_t port, duration timeout,
                                               std::string& what) {
    auto ex = co_await asio::this_coro::executor;
    if (host.empty()) host = "localhost";
    asio::steady_timer timer(ex);
    timer.expires_after(timeout);  // one deadline for resolving and connecting together
    tcp::resolver resolver(ex);

    auto resolved = co_await (resolver.async_resolve(host, std::to_string(port),
                                                     tcp::resolver::numeric_service, use) ||
                              timer.async_wait(use));
    if (resolved.index() == 1) {
        what = "timed out resolving '" + host + "' after " + seconds_text(timeout);
        co_return asio::error::timed_out;
    }
    auto [resolve_ec, endpoints] = std::get<0>(std::move(resolved));
    if (resolve_ec) {
        what = "cannot resolve '" + host + "': " + resolve_ec.message();
        co_return resolve_ec;
    }

    auto connected = co_await (asio::async_connect(socket, endpoints, use) || timer.async_wait(use));
    if (connected.index() == 1) {
        error_code ignored;
        socket.close(ignored);
        what = "timed out connecting to " + format_host_port(host, port) + " after " + seconds_text(timeout);
        co_return asio::error::timed_out;
    }
    auto [connect_ec, endpoint] = std::get<0>(std::move(connected));
    if (connect_ec) {
        what = "cannot connect to " + format_host_port(host, port) + ": " + connect_ec.message();
        co_return connect_ec;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // writes are batched by us, not by Nagle
    co_return error_code{};
}

asio::awaitable<read_result> read_frames(client_stream& stream, decoder& dec,
                                         std::span<char> buffer, frame_handler& handler,
                                         read_options opts) {
    if (opts.idle_timeout <= duration::zero()) {
        co_return co_await read_loop(stream, dec, buffer, handler, nullptr);
    }
    auto last_read = clock::now();
    auto outcome = co_await (read_loop(stream, dec, buffer, handler, &last_read) ||
                             idle_watchdog(last_read, opts.idle_timeout));
    if (outcome.index() == 0) co_return std::get<0>(std::move(outcome));
    handler.on_idle();
    read_result res;
    res.ec = asio::error::timed_out;
    res.message = "nothing received for " + seconds_text(opts.idle_timeout);
    co_return res;
}

// ---------------------------------------------------------------------------------------------

send_queue::send_queue(codec_options opts, std::size_t max_pending)
    : opts_(opts), max_pending_(max_pending) {}

void send_queue::wake_locked() {
    if (wake_) {
        auto wake = std::move(wake_);
        wake_ = nullptr;
        wake();
    }
}

error_code send_queue::push(std::string_view payload) {
    std::lock_guard lock(mutex_);
    auto ec = append_frame(pending_, payload, opts_);
    if (!ec) wake_locked();
    return ec;
}

void send_queue::push_encoded(std::string_view frames) {
    if (frames.empty()) return;
    std::lock_guard lock(mutex_);
    pending_.append(frames);
    wake_locked();
}

void send_queue::wait_for_room() {
    std::unique_lock lock(mutex_);
    room_.wait(lock, [this] { return pending_.size() <= max_pending_; });
}

void send_queue::close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    wake_locked();
}

send_queue::take_result send_queue::take(std::string& out, std::function<void()> wake) {
    std::lock_guard lock(mutex_);
    if (!pending_.empty()) {
        out.append(pending_);
        pending_.clear();
        room_.notify_all();
        return take_result::data;
    }
    if (closed_) return take_result::closed;
    wake_ = std::move(wake);
    return take_result::empty;
}

void send_queue::clear_wake() {
    std::lock_guard lock(mutex_);
    wake_ = nullptr;
}

frame_writer::frame_writer(asio::any_io_executor ex, std::shared_ptr<send_queue> queue)
    : ex_(std::move(ex)),
      queue_(std::move(queue)),
      wake_timer_(ex_),
      alive_(std::make_shared<bool>(true)) {}

frame_writer::~frame_writer() {
    std::lock_guard lock(queue_->mutex_);
    queue_->wake_ = nullptr;
}

asio::awaitable<error_code> frame_writer::run(client_stream& stream, bool half_close) {
    for (;;) {
        bool sleep = false;
        bool done = false;
        {
            std::lock_guard lock(queue_->mutex_);
            if (!queue_->pending_.empty()) {
                writing_.clear();
                std::swap(writing_, queue_->pending_);
                queue_->room_.notify_all();
            } else if (queue_->closed_) {
                done = true;
            } else {
                sleep = true;
                // Called by a pushing thread under the queue's mutex; the timer is only touched
                // on our executor, and not at all once this writer is gone.
                queue_->wake_ = [ex = ex_, timer = &wake_timer_,
                                 alive = std::weak_ptr<bool>(alive_)] {
                    asio::post(ex, [timer, alive] {
                        if (alive.lock()) timer->cancel();
                    });
                };
            }
        }
        if (done) {
            error_code ec;
            if (half_close) ec = co_await stream.shutdown_send();
            co_return ec;
        }
        if (sleep) {
            wake_timer_.expires_at(clock::time_point::max());
            co_await wake_timer_.async_wait(use);
            if (co_await cancelled()) {
                std::lock_guard lock(queue_->mutex_);
                queue_->wake_ = nullptr;
                co_return asio::error::operation_aborted;
            }
            continue;
        }
        auto [ec, n] = co_await stream.write(asio::buffer(writing_));
        bytes_written_ += n;
        if (ec) co_return ec;
    }
}

error_code queue_lines(int fd, send_queue& queue, std::string& what,
                       std::string_view before_each, std::string_view at_end) {
    std::vector<char> buffer(256 * 1024);
    line_splitter lines(queue.options().max_message);
    // This read's lines, framed in place with write_frame (no capacity check or allocation
    // per line; the buffer grows only for a read of many short lines).
    std::vector<char> batch(buffer.size() + 64 * 1024);
    std::size_t fill = 0;
    auto room_for = [&](std::size_t n) {
        if (batch.size() - fill < n) batch.resize(std::max(2 * batch.size(), fill + n));
    };
    auto append = [&](std::string_view bytes) {
        room_for(bytes.size());
        if (!bytes.empty()) std::memcpy(batch.data() + fill, bytes.data(), bytes.size());
        fill += bytes.size();
    };
    auto flush = [&] {
        queue.push_encoded({batch.data(), fill});
        fill = 0;
    };
    auto fail = [&](error_code ec, std::string message) {
        flush();
        queue.close();
        what = std::move(message);
        return ec;
    };
    // Frames the lines the splitter gives until it needs more input.
    auto frame_lines = [&](auto&& next_event) -> error_code {
        for (;;) {
            switch (next_event()) {
                case line_splitter::event::need_more:
                    return {};
                case line_splitter::event::too_long:
                    return fail(errc::message_too_large, lines.too_long_message());
                case line_splitter::event::line: {
                    append(before_each);
                    const std::string_view line = lines.line();
                    room_for(max_header_size + line.size());
                    std::error_code ec;
                    const std::size_t n = write_frame(batch.data() + fill, line, ec, queue.options());
                    if (n == 0) {
                        return fail(ec, "cannot send line " + std::to_string(lines.line_number()) +
                                            ": " + ec.message());
                    }
                    fill += n;
                }
            }
        }
    };

    for (;;) {
        ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            error_code ec(errno, boost::system::system_category());
            return fail(ec, "cannot read standard input: " + ec.message());
        }
        if (n == 0) break;
        std::string_view in(buffer.data(), static_cast<std::size_t>(n));
        if (auto ec = frame_lines([&] { return lines.next(in); })) return ec;
        queue.wait_for_room();
        flush();
    }
    if (auto ec = frame_lines([&] { return lines.finish(); })) return ec;
    append(at_end);
    flush();
    queue.close();
    return {};
}

asio::awaitable<void> wait_forever() {
    asio::steady_timer timer(co_await asio::this_coro::executor, clock::time_point::max());
    co_await timer.async_wait(use);
}

}  // namespace framecast::io
