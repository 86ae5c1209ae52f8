#include "session.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

namespace framecast::io {

using asio::awaitable;
using clock = std::chrono::steady_clock;

namespace {

// Completion of the session's coroutines: they report failures themselves, so an exception
// here is a bug or out-of-memory; let it leave io_context::run() rather than leave a
// half-dead client.
void rethrow(std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
}

// What an idle timeout found: how far into the frame the client got, as the codec reports it
// (the header bytes too, when it stopped inside one).
std::string truncation_detail(const decoder& d) {
    auto t = d.truncated();
    if (!t) return d.error_message();
    std::string detail = to_string(*t);
    if (t->in_header) detail += " " + escape_bytes(d.header_bytes());
    return detail;
}

}  // namespace

idle_sweep::idle_sweep(asio::io_context& io, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds window)
    : timer_(io) {
    using ms = std::chrono::milliseconds;
    ms shortest{0};
    for (ms t : {timeout, window}) {
        if (t.count() > 0 && (shortest.count() == 0 || t < shortest)) shortest = t;
    }
    if (shortest.count() > 0) period_ = std::clamp(shortest / 4, ms(20), ms(1000));
}

void idle_sweep::start() {
    if (period_.count() <= 0) return;
    auto sweep = [this, period = period_]() -> awaitable<void> {
        for (;;) {
            timer_.expires_after(period);
            auto [ec] = co_await timer_.async_wait(use_nothrow);
            if (ec || stopped_) co_return;
            const auto now = clock::now();
            std::vector<session*> stuck(stuck_.begin(), stuck_.end());
            for (auto* s : stuck) s->check_idle(now);
        }
    };
    asio::co_spawn(timer_.get_executor(), sweep, rethrow);
}

// ---------------------------------------------------------------------------------------------

session::session(session_context& ctx, std::unique_ptr<transport> t, std::string peer)
    : member(ctx.clients, std::move(peer), ctx.chat == nullptr), ctx_(ctx),
      transport_(std::move(t)),
      decoder_(ctx.first_frame_codec,
               discards_input() ? decode_mode::streaming : decode_mode::whole),
      limiter_(ctx.opts.max_rate), byte_limiter_(ctx.opts.max_rate_bytes),
      batch_(ctx.opts.codec),
      first_frame_open_(ctx.resume != nullptr || ctx.publishers != nullptr) {}

void session::start() {
    if (ctx_.welcome) deliver(ctx_.welcome);
    if (awaiting_name()) {
        // A chat client has the idle timeout to send its username: until then it counts as
        // in the middle of a frame (otherwise a silent connection holds a slot forever).
        mid_frame_ = true;
        mid_frame_since_ = clock::now();
        rate_mark_ = mid_frame_since_;
        ctx_.sweep.watch(this);
    }
    spawn_reader();
    spawn_writer();
}

void session::spawn_reader() {
    auto self = std::static_pointer_cast<session>(shared_from_this());
    asio::co_spawn(transport_->get_executor(), [self] { return self->reader(); }, rethrow);
}

// The transport is readable again (or failed): the reader goes on.
void session::resume_reading(error_code ec) {
    if (closed_) return;
    if (ec) {
        close(close_reason::wait_failed, ec.message());
        return;
    }
    try {
        spawn_reader();
    } catch (const std::bad_alloc&) {
        close(close_reason::read_failed, "out of memory");
    }
}

void session::spawn_writer() {
    auto self = std::static_pointer_cast<session>(shared_from_this());
    asio::co_spawn(transport_->get_executor(), [self] { return self->writer(); }, rethrow);
}

// A woken writer's first turn, without a coroutine: most wakes (a tick, a chat line) write
// everything in one call and stop again. The coroutine is started only when there is more to
// do: the transport is full, a batch left more queued, a drain or a resume replay.
void session::write_now() {
    if (closed_) return;
    if (!draining_ && !resume_seat_.replaying && channel_seat_.replaying.empty() &&
        !queue_.empty()) {
        error_code ec;
        write_queued(ec);
        if (ec) {
            close(close_reason::write_failed, ec.message());
            return;
        }
        if (queue_.empty() && !transport_->output_pending()) {
            writer_waiting_ = true;
            return;
        }
    }
    spawn_writer();
}

// Restarts the writer stopped on an empty queue (a delivery, or drain()). Posted: co_spawn
// would run the writer at once, inside the hub's broadcast that called this.
void session::wake_writer() {
    if (!writer_waiting_ || closed_) return;
    writer_waiting_ = false;
    try {
        asio::post(transport_->get_executor(),
                   [self = std::static_pointer_cast<session>(shared_from_this())] {
                       self->write_now();
                   });
    } catch (const std::bad_alloc&) {
        // No memory for its frame: the next delivery tries again.
        writer_waiting_ = true;
        spdlog::error("client {}: out of memory starting its writer", peer());
    }
}

void session::close(close_reason why, std::string_view detail) {
    if (!mark_closed()) return;
    count_close(ctx_.counters, why, decoder_.error());
    const auto level = rule_of(why).level;
    const std::string text = close_text(why, detail);
    // Info lines (a peer that closed, a read that failed) are not throttled: only warnings a
    // peer can provoke at will are.
    std::string more;
    const auto kind = static_cast<std::size_t>(why) * (errc_count + 1) +
                      (decoder_.error().category() == codec_category()
                           ? static_cast<std::size_t>(decoder_.error().value()) % (errc_count + 1)
                           : 0);
    const bool log = level < spdlog::level::warn ||
                     ctx_.close_logs[kind % ctx_.close_logs.size()].allow(more);
    if (seat_.joined) {
        if (log) {
            spdlog::log(level, "{} left ({}): {}{}", escape_controls(name(), true), peer(), text,
                        more);
        }
        ctx_.chat->leave(*this);
    } else if (!text.empty() && log) {
        spdlog::log(level, "client {} disconnected: {}{}", peer(), text, more);
    }
    if (ctx_.channels) ctx_.channels->leave(*this, channel_seat_);
    if (ctx_.resume) ctx_.resume->leave(*this, resume_seat_);
    publish_leave();
    ctx_.budget.sub_inbound(inbound_accounted_);
    inbound_accounted_ = 0;
    transport_->set_close_reason(text);
    transport_->close();
    if (mid_frame_) ctx_.sweep.unwatch(this);
    --ctx_.counters.clients_current;
    asio::post(transport_->get_executor(),
               [self = shared_from_this(), &ctx = ctx_] { ctx.remove(*self); });
}

void session::drain() {
    draining_ = true;
    wake_writer();
}

void session::check_idle(clock::time_point now) {
    if (closed_ || !mid_frame_) return;
    if (!check_min_rate(now)) return;
    const auto timeout = ctx_.opts.idle_timeout;
    if (timeout.count() <= 0 || now - mid_frame_since_ < timeout) return;
    const std::string ms = std::to_string(timeout.count());
    if (awaiting_name() && decoder_.at_frame_boundary()) {
        close(close_reason::join_timeout, "no username within " + ms + " ms (idle timeout)");
        return;
    }
    decoder_.finish();
    close(close_reason::idle_timeout, "stuck in the middle of a frame for " + ms + " ms (" +
                                          truncation_detail(decoder_) + ")");
}

// Slowloris by bytes: inside a frame a client must keep up min_inbound_rate, measured over
// windows of min_inbound_window (a frame trickled a byte at a time is cut, whatever the idle
// timeout). False when it was closed.
bool session::check_min_rate(clock::time_point now) {
    const auto rate = ctx_.opts.min_inbound_rate;
    const auto window = ctx_.opts.min_inbound_window;
    if (rate == 0 || window.count() <= 0 || decoder_.at_frame_boundary()) return true;
    const auto elapsed = now - rate_mark_;
    if (elapsed < window) return true;
    const std::uint64_t got = bytes_read_ - rate_mark_bytes_;
    const double seconds = std::chrono::duration<double>(elapsed).count();
    if (static_cast<double>(got) >= static_cast<double>(rate) * seconds) {
        rate_mark_ = now;
        rate_mark_bytes_ = bytes_read_;
        return true;
    }
    decoder_.finish();
    close(close_reason::idle_timeout,
          std::to_string(got) + " bytes in the last " + std::to_string(std::lround(seconds)) +
              " s in the middle of a frame, below " + std::to_string(rate) +
              " bytes per second (min inbound rate" +
              (held_by_budget() ? "; not read meanwhile: the server is at its memory limit"
                                : "") +
              ") (" + truncation_detail(decoder_) + ")");
    return false;
}

// ---------------------------------------------------------------------------------------------
// Reading

awaitable<void> session::reader() {
    // What this client sends is relayed to the others: while its traffic fills one of their
    // queues, stop reading (TCP then slows the sender down) instead of queueing more.
    const bool paced = ctx_.opts.publish || ctx_.chat || ctx_.channels;
    for (;;) {
        while (paced && ctx_.clients.holds(id()) && !closed_) {
            co_await ctx_.clients.wait_paced();
        }
        if (held_by_budget() && !closed_) {
            // At the memory limit: a client holding part of a frame is not read until the
            // budget frees up (polled: it may be cut by the minimum inbound rate meanwhile).
            ++ctx_.counters.memory_paused;
            asio::steady_timer pause(transport_->get_executor());
            while (held_by_budget() && !closed_) {
                pause.expires_after(std::chrono::milliseconds(100));
                co_await pause.async_wait(use_nothrow);
            }
        }
        if (closed_) co_return;
        bool stop = false;
        const bool empty = read_turn(paced, stop);
        if (stop || closed_) co_return;
        if (empty) {
            // Only once the transport is empty: readiness may be reported by edge, so a wait
            // started with bytes already pending might never complete. The reader stops and
            // is started again on readiness: an idle client holds no coroutine. (The hub
            // keeps the session alive; the wait holds it weakly, so a transport keeping the
            // wait's handler makes no cycle.)
            transport_->on_readable(
                [w = std::weak_ptr<session>(std::static_pointer_cast<session>(shared_from_this()))](
                    error_code ec) {
                    if (auto self = w.lock()) self->resume_reading(ec);
                });
            co_return;
        } else {
            co_await asio::post(transport_->get_executor(), asio::use_awaitable);
        }
    }
}

bool session::read_turn(bool paced, bool& stop) {
    // At the memory limit a client holding nothing reads a little at a time, once per turn,
    // so many clients together can only push the budget a little past it.
    const bool tight = ctx_.budget.over();
    std::span<char> buf(ctx_.read_buffer);
    if (tight) buf = buf.first(4096);
    for (int i = 0; i < (tight ? 1 : max_reads_per_turn); ++i) {
        if (paced && ctx_.clients.holds(id())) return false;  // waits in reader()
        if (held_by_budget()) return false;                    // waits in reader()
        error_code ec;
        const std::size_t n = transport_->try_read(buf, ec);
        if (ec == asio::error::would_block) return true;
        stop = true;
        if (ec == asio::error::eof) {
            on_eof();
            return false;
        }
        if (ec) {
            close(close_reason::read_failed, ec.message());
            return false;
        }
        if (!on_bytes({buf.data(), n})) return false;
        stop = false;
    }
    return false;
}

void session::on_eof() {
    if (decoder_.finish()) {
        close(close_reason::bad_input, decoder_.error_message());
    } else if (ctx_.channels && !queue_.empty()) {
        // Channels: the notices answering its last commands still reach it (a publisher
        // learns what was refused before its connection ends).
        drain();
    } else {
        close(close_reason::closed_by_peer);
    }
}

// Decodes what arrived; false when the client was closed (or, publish acks through a shared
// log, waits for the log's answer: reading stops until it comes).
bool session::on_bytes(std::span<const char> in) {
    ctx_.counters.bytes_in += in.size();
    bytes_read_ += in.size();
    if (!over_rate(in.size())) return false;
    return on_frames(in);
}

bool session::on_frames(std::span<const char> in) {
    bool completed = false;  // a frame ended in these bytes
    for (;;) {
        const auto ev = decoder_.next(in);
        if (ev == decode_event::need_more) break;
        if (ev == decode_event::error) return on_decode_error();
        if (first_frame_open_ && resume_first_frame(ev)) {
            if (closed_) return false;
            if (publish_log_ && publish_log_->waiting) return publish_hold(in);
            continue;
        }
        // Streaming (input discarded): pieces of a frame pass by, never buffered.
        if (ev == decode_event::begin || ev == decode_event::data) continue;
        ++ctx_.counters.messages_in;
        completed = true;
        if (limiter_.rate() != 0 && !limiter_.allow(clock::now())) {
            if (!flush_batch()) return false;
            close(close_reason::flood, "more than " + std::to_string(limiter_.rate()) +
                                           " messages per second (max rate)");
            return false;
        }
        if (ev == decode_event::end) {
            spdlog::debug("client {}: ignored a {}-byte message (not publishing)", peer(),
                          decoder_.length());
            continue;
        }
        if (!on_message(decoder_.payload())) return false;
        if (channel_seat_.held) return channel_hold(in);
    }
    if (!flush_batch()) return false;
    publish_ack();
    account_inbound();
    track_mid_frame(completed);
    return true;
}

// max_rate_bytes; false when the client was closed for it.
bool session::over_rate(std::size_t bytes) {
    if (byte_limiter_.rate() == 0 || byte_limiter_.allow(clock::now(), bytes)) return true;
    close(close_reason::flood, "more than " + std::to_string(byte_limiter_.rate()) +
                                   " bytes per second (max rate bytes)");
    return false;
}

// The decoder's buffer (a frame that spans reads) in the memory budget.
void session::account_inbound() noexcept {
    const std::size_t now = decoder_.buffered_capacity();
    ctx_.budget.sub_inbound(inbound_accounted_);
    ctx_.budget.add_inbound(now);
    inbound_accounted_ = now;
}

bool session::on_decode_error() {
    // The whole frames before the bad one are relayed, as if they had come alone.
    if (!flush_batch()) return false;
    if (awaiting_name() && decoder_.error() == errc::message_too_large) {
        close(close_reason::bad_username_frame, decoder_.error_message() + " (max name)");
    } else {
        close(close_reason::bad_input, decoder_.error_message());
    }
    return false;
}

// One decoded message. Publishing: the messages of one read travel as one relay unit (one
// allocation and one queue entry per client for all of them), cut at relay_unit_bytes so the
// slow-consumer policy still works in small units.
bool session::on_message(std::string_view payload) {
    if (ctx_.chat) return on_chat_frame(payload);
    if (ctx_.channels) return on_channel_frame(payload);
    if (!ctx_.opts.publish || ctx_.shutting_down) {
        spdlog::debug("client {}: ignored a {}-byte message (not publishing)", peer(),
                      payload.size());
        return true;
    }
    // The unit is cut before this message is numbered: a unit's numbers are its messages'.
    if (!batch_.empty() && batch_.would_exceed(payload.size(), relay_unit_bytes(ctx_.opts)) &&
        !flush_batch()) {
        return false;
    }
    if (!publish_accepts()) return true;  // publish acks: a repeat, dropped
    // The frame as it arrived (the decoder already checked its header): no second encode.
    batch_.append_encoded(decoder_.header_bytes(), payload);
    if (publish_log_) publish_log_end(batch_.size());
    return true;
}

// False when publishing closed this client.
bool session::flush_batch() {
    if (batch_.empty()) return true;
    if (publish_log_) publish_log_unit();
    ctx_.publish(batch_.take(), this);
    if (publish_log_) publish_log_->unit.reset();
    return !closed_;
}

// Chat: the first frame is the username, every later one a message relayed to the others.
bool session::on_chat_frame(std::string_view payload) {
    // The header exactly as received: the relay repeats it byte for byte.
    const std::string_view header = decoder_.header_bytes();
    if (!seat_.joined) {
        if (!ctx_.chat->join(*this, seat_, header, payload)) return false;
        // Messages may now be as long as max_message.
        decoder_ = decoder(ctx_.opts.codec, decode_mode::whole);
        return true;
    }
    if (ctx_.shutting_down) return true;
    // The relays of one read travel as one unit, as a publisher's frames do: a client sending
    // many small messages costs one queue entry per read per client, not one per message.
    const std::size_t relay = seat_.user_frame->size() + header.size() + payload.size();
    if (!batch_.empty() && batch_.size() + relay > relay_unit_bytes(ctx_.opts) && !flush_batch()) {
        return false;
    }
    batch_.append_encoded(*seat_.user_frame, header, payload);
    return true;
}


void session::track_mid_frame(bool completed) {
    if (decoder_.at_frame_boundary() && !awaiting_name()) {
        if (mid_frame_) ctx_.sweep.unwatch(this);
        mid_frame_ = false;
    } else if (decoder_.at_frame_boundary()) {
        // Chat: still no username (see start()); the clock runs from the connection.
    } else if (!mid_frame_) {
        mid_frame_ = true;
        mid_frame_since_ = clock::now();
        rate_mark_ = mid_frame_since_;
        rate_mark_bytes_ = bytes_read_;
        ctx_.sweep.watch(this);
    } else if (completed) {
        // Still mid-frame, but in a new frame: a steady sender whose reads never end on a
        // frame boundary is not a slowloris. The clock runs per frame.
        mid_frame_since_ = clock::now();
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

awaitable<void> session::writer() {
    while (!closed_) {
        // Resume: the backlog is queued a piece at a time as the queue drains.
        if (resume_seat_.replaying && !draining_) ctx_.resume->pump(*this, resume_seat_);
        if (!channel_seat_.replaying.empty() && !draining_) {
            ctx_.channels->pump(*this, channel_seat_);
        }
        // TLS may hold ciphertext of what it took while the socket was full: write_queued()
        // sends it like queued bytes (nothing else would: the writer starts again only for a
        // new delivery).
        if (queue_.empty() && !transport_->output_pending()) {
            if (draining_) {
                // End of stream after everything; its own bytes (TLS close_notify) may wait
                // for the socket too, so the close comes once they are sent.
                if (!send_shut_) {
                    send_shut_ = true;
                    transport_->shutdown_send();
                    continue;
                }
                finish_drain();
                co_return;
            }
            // Stop: an idle client holds no coroutine frame and no timer (wake_writer()).
            writer_waiting_ = true;
            co_return;
        }
        error_code ec;
        const bool blocked = write_queued(ec);
        if (ec) {
            close(close_reason::write_failed, ec.message());
            co_return;
        }
        if (blocked) {
            auto wec = co_await transport_->wait_writable();
            if (closed_) co_return;
            if (wec) {
                close(close_reason::wait_failed, wec.message());
                co_return;
            }
        } else if (!queue_.empty()) {
            // A full batch went out and more is queued: let other clients have a turn.
            co_await asio::post(transport_->get_executor(), asio::use_awaitable);
        }
    }
}

// One non-blocking write of up to write_batch bytes from the front of the queue (the partly
// written front frame resumes where it stopped), after what the transport still holds. True
// when the transport took less than offered or still holds bytes (full): wait for writable.
bool session::write_queued(error_code& ec) {
    std::array<asio::const_buffer, max_gather> bufs;
    std::array<const shared_frame*, max_gather> owners;
    const bool by_unit = transport_->frames_units();
    std::size_t nb = 0, total = 0, used = 0;
    char* scratch = ctx_.write_scratch.data();
    for (std::size_t i = 0; i < queue_.size() && nb < max_gather && total < write_batch; ++i) {
        const std::string& frame = *queue_[i];
        const std::size_t skip = i == 0 ? queue_.front_offset() : 0;
        const char* p = frame.data() + skip;
        const std::size_t len = frame.size() - skip;
        if (by_unit) {
            owners[nb] = &queue_[i];
            bufs[nb++] = asio::const_buffer(p, len);
        } else if (len < copy_below) {
            if (used + len > write_batch) break;
            std::memcpy(scratch + used, p, len);
            if (nb > 0 && static_cast<const char*>(bufs[nb - 1].data()) + bufs[nb - 1].size() ==
                              scratch + used) {
                bufs[nb - 1] = asio::const_buffer(bufs[nb - 1].data(), bufs[nb - 1].size() + len);
            } else {
                bufs[nb++] = asio::const_buffer(scratch + used, len);
            }
            used += len;
        } else {
            bufs[nb++] = asio::const_buffer(p, len);
        }
        total += len;
    }
    const std::size_t written = by_unit ? transport_->try_write_units({bufs.data(), nb}, {owners.data(), nb}, ec)
                                        : transport_->try_write({bufs.data(), nb}, ec);
    if (ec == asio::error::would_block) {
        ec = {};
        return true;
    }
    if (ec) return false;
    on_written(written);
    return written < total || transport_->output_pending();
}

// Everything queued and the end of stream are sent: discard unread input (closing with unread
// input would send RST, which can destroy data still in flight to the peer), close.
void session::finish_drain() {
    auto& buf = ctx_.read_buffer;
    for (int i = 0; i < 64; ++i) {
        error_code ec;
        transport_->try_read(buf, ec);
        if (ec) break;
    }
    close(close_reason::shutdown);
}

}  // namespace framecast::io
