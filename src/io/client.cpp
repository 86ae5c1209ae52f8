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

namespace framecast::io {
namespace {

using namespace asio::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;
constexpr auto use = use_nothrow;

std::string host_port(const std::string& host, std::uint16_t port) {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

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

asio::awaitable<read_result> read_loop(tcp::socket& socket, decoder& dec, std::span<char> buffer,
                                       frame_handler& handler, clock::time_point* last_read) {
    read_result res;
    error_code ec;
    socket.non_blocking(true, ec);
    // Streaming mode: the header bytes of the frame being decoded, for on_begin().
    std::array<char, max_header_size> header{};
    std::size_t header_fill = 0;
    unsigned reads_in_a_row = 0;
    auto stop = [&res] {
        res.stopped = true;
        return res;
    };

    for (;;) {
        // Inside a payload with at least a buffer's worth still to come: read it straight into
        // the decoder (same read size), so a large frame is not copied a second time.
        const std::span<char> space = dec.payload_space();
        const bool direct = space.size() >= buffer.size();
        // Try the read first and only wait when there is nothing: a busy stream costs one system
        // call per buffer, and the handler gets to flush exactly when the stream goes quiet.
        std::size_t n = socket.read_some(
            asio::buffer(direct ? space.data() : buffer.data(), buffer.size()), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            handler.on_idle();
            reads_in_a_row = 0;
            auto [wait_ec] = co_await socket.async_wait(tcp::socket::wait_read, use);
            if (wait_ec) {
                res.ec = wait_ec;
                res.message = "connection lost: " + wait_ec.message();
                co_return res;
            }
            continue;
        }
        if (ec == asio::error::eof) {
            if (dec.finish()) {
                res.ec = dec.error();
                res.message = dec.error_message();
            }
            co_return res;
        }
        if (ec) {
            // Lost in the middle of a frame: say so, as for a close there.
            if (!dec.at_frame_boundary() && dec.finish()) {
                res.ec = dec.error();
                res.message = ec.message() + ": " + dec.error_message();
            } else {
                res.ec = ec;
                res.message = "connection lost: " + ec.message();
            }
            co_return res;
        }
        if (last_read) *last_read = clock::now();
        res.bytes += n;
        handler.on_read(n);
        if (direct) {
            auto ev = dec.commit(n);
            if (ev == decode_event::frame) {
                if (!handler.on_frame(dec.payload())) co_return stop();
            } else if (ev == decode_event::error) {
                res.ec = dec.error();
                res.message = dec.error_message();
                co_return res;
            }
        }

        std::span<const char> in(buffer.data(), direct ? 0 : n);
        for (bool more = !direct; more;) {
            const char* from = in.data();
            auto ev = dec.next(in);
            auto consumed = static_cast<std::size_t>(in.data() - from);
            switch (ev) {
                case decode_event::need_more:
                    if (header_fill + consumed <= header.size()) {
                        std::memcpy(header.data() + header_fill, from, consumed);
                        header_fill += consumed;
                    }
                    more = false;
                    break;
                case decode_event::frame:
                    header_fill = 0;
                    if (!handler.on_frame(dec.payload())) co_return stop();
                    break;
                case decode_event::begin:
                    if (header_fill + consumed <= header.size()) {
                        std::memcpy(header.data() + header_fill, from, consumed);
                        header_fill += consumed;
                    }
                    if (!handler.on_begin(dec.length(), {header.data(), header_fill})) {
                        co_return stop();
                    }
                    header_fill = 0;
                    break;
                case decode_event::data:
                    if (!handler.on_data(dec.payload())) co_return stop();
                    break;
                case decode_event::end:
                    if (!handler.on_end()) co_return stop();
                    break;
                case decode_event::error:
                    res.ec = dec.error();
                    res.message = dec.error_message();
                    co_return res;
            }
        }
        // A peer that never pauses must not starve the rest of the io_context (the writer of
        // --send, timers): yield now and then.
        if (++reads_in_a_row == 64) {
            reads_in_a_row = 0;
            co_await asio::post(socket.get_executor(), asio::use_awaitable);
            if (co_await cancelled()) {
                res.ec = asio::error::operation_aborted;
                res.message = "cancelled";
                co_return res;
            }
        }
    }
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
        what = "timed out connecting to " + host_port(host, port) + " after " + seconds_text(timeout);
        co_return asio::error::timed_out;
    }
    auto [connect_ec, endpoint] = std::get<0>(std::move(connected));
    if (connect_ec) {
        what = "cannot connect to " + host_port(host, port) + ": " + connect_ec.message();
        co_return connect_ec;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // writes are batched by us, not by Nagle
    co_return error_code{};
}

asio::awaitable<read_result> read_frames(tcp::socket& socket, decoder& dec,
                                         std::span<char> buffer, frame_handler& handler,
                                         read_options opts) {
    if (opts.idle_timeout <= duration::zero()) {
        co_return co_await read_loop(socket, dec, buffer, handler, nullptr);
    }
    auto last_read = clock::now();
    auto outcome = co_await (read_loop(socket, dec, buffer, handler, &last_read) ||
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

frame_writer::frame_writer(asio::any_io_executor ex, std::shared_ptr<send_queue> queue)
    : ex_(std::move(ex)),
      queue_(std::move(queue)),
      wake_timer_(ex_),
      alive_(std::make_shared<bool>(true)) {}

frame_writer::~frame_writer() {
    std::lock_guard lock(queue_->mutex_);
    queue_->wake_ = nullptr;
}

asio::awaitable<error_code> frame_writer::run(tcp::socket& socket, bool half_close) {
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
            if (half_close) socket.shutdown(tcp::socket::shutdown_send, ec);
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
        auto [ec, n] = co_await asio::async_write(socket, asio::buffer(writing_), use);
        bytes_written_ += n;
        if (ec) co_return ec;
    }
}

error_code queue_lines(int fd, send_queue& queue, std::string& what) {
    std::vector<char> buffer(256 * 1024);
    std::string carry;  // a line that spans reads
    std::string batch;  // this read's lines, framed
    std::uint64_t line_number = 0;
    auto fail = [&](error_code ec, std::string message) {
        queue.push_encoded(batch);
        queue.close();
        what = std::move(message);
        return ec;
    };
    auto frame_line = [&](std::string_view line) -> error_code {
        ++line_number;
        if (auto ec = append_frame(batch, line, queue.options())) {
            return fail(ec, "cannot send line " + std::to_string(line_number) + ": " + ec.message());
        }
        return {};
    };

    for (;;) {
        ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            error_code ec(errno, boost::system::system_category());
            return fail(ec, "cannot read standard input: " + ec.message());
        }
        if (n == 0) break;
        batch.clear();
        const char* p = buffer.data();
        const char* end = p + n;
        while (p < end) {
            const auto* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
            if (!nl) {
                // Bounded: a line longer than the largest message is refused, not held.
                if (carry.size() + static_cast<std::size_t>(end - p) > queue.options().max_message) {
                    return fail(errc::message_too_large,
                                "line " + std::to_string(line_number + 1) + " is longer than " +
                                    std::to_string(queue.options().max_message) +
                                    " bytes, the maximum message size (--max-message)");
                }
                carry.append(p, end);
                break;
            }
            error_code ec;
            if (carry.empty()) {
                ec = frame_line({p, nl});
            } else {
                carry.append(p, nl);
                ec = frame_line(carry);
                carry.clear();
            }
            if (ec) return ec;
            p = nl + 1;
        }
        queue.wait_for_room();
        queue.push_encoded(batch);
    }
    batch.clear();
    if (!carry.empty()) {
        if (auto ec = frame_line(carry)) return ec;
    }
    queue.push_encoded(batch);
    queue.close();
    return {};
}

asio::awaitable<void> wait_forever() {
    asio::steady_timer timer(co_await asio::this_coro::executor, clock::time_point::max());
    co_await timer.async_wait(use);
}

}  // namespace framecast::io
