#include "framecast/io/server.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <deque>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <spdlog/spdlog.h>

namespace framecast::io {

using asio::awaitable;
using asio::ip::tcp;
using clock = std::chrono::steady_clock;

namespace {

// One write to a client: small frames are copied into the server's scratch buffer (one
// contiguous iovec, however many frames), large ones are passed by reference; at most
// max_gather iovecs (Asio's per-call limit) and about write_batch bytes per call.
constexpr std::size_t max_gather = 64;
constexpr std::size_t write_batch = 256 * 1024;
constexpr std::size_t copy_below = 16 * 1024;
// How many frames lie in `unit`, whole frames encoded by this server (or a backplane peer):
// one header parse per frame. At least 1, whatever the bytes. With lengths in code points a
// unit is always one message (--publish does not batch then: a header does not give the size).
std::size_t frames_in(std::string_view unit, const codec_options& codec) {
    if (codec.unit != length_unit::bytes) return 1;
    const std::size_t header_size = codec.header_size;
    std::size_t n = 0;
    while (unit.size() >= header_size) {
        auto header = unit.substr(0, header_size);
        std::uint64_t length = 0;
        auto [end, ec] = std::from_chars(header.data(), header.data() + header.size(), length);
        if (ec != std::errc() || length > unit.size() - header_size) break;
        ++n;
        unit.remove_prefix(header_size + length);
    }
    return std::max<std::size_t>(n, 1);
}

// One message encoded for the hub; null (and logged) when its length cannot be announced.
shared_frame encode_message(std::string_view payload, const codec_options& codec) {
    auto frame = std::make_shared<std::string>();
    if (auto ec = append_frame(*frame, payload, codec)) {
        spdlog::error("cannot send a {}-byte message: {}", payload.size(), ec.message());
        return nullptr;
    }
    return frame;
}

// Reads per wake-up before yielding to other clients.
constexpr int max_reads_per_turn = 16;
constexpr std::size_t read_buffer_size = 64 * 1024;

std::string to_string(const tcp::endpoint& ep) {
    auto addr = ep.address();
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
        addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    }
    if (addr.is_v6()) return "[" + addr.to_string() + "]:" + std::to_string(ep.port());
    return addr.to_string() + ":" + std::to_string(ep.port());
}

// Completion of the server's coroutines: they report failures themselves, so an exception here
// is a bug or out-of-memory; let it leave io_context::run() rather than leave a half-dead client.
void rethrow(std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
}

// The decoder of a chat client's first frame: a header announcing more than --max-name bytes
// fails before the name is buffered.
codec_options first_frame_codec(const server_options& o) {
    auto c = o.codec;
    if (o.chat.enabled) c.max_message = std::min<std::uint64_t>(c.max_message, o.chat.max_name);
    return c;
}

}  // namespace

std::size_t relay_unit_bytes(const server_options& o) noexcept {
    // With lengths in code points a header does not give a frame's size in bytes, and the
    // hub counts a unit's messages by its headers (frames_in): one message per unit then.
    if (o.codec.unit != length_unit::bytes) return 0;
    return std::min<std::size_t>(64 * 1024, o.client_buffer / 8);
}

shared_frame make_shared_frame(std::string_view payload, const codec_options& opts) {
    return std::make_shared<const std::string>(encode_frame(payload, opts));
}

// ---------------------------------------------------------------------------------------------

struct server::impl {
    impl(server& owner, asio::io_context& io)
        : owner(owner), io(io), sweep_timer(io), drain_timer(io), pace_gate(io), lag_timer(io) {}

    awaitable<void> accept_loop(tcp::acceptor& acceptor);
    void admit(tcp::socket socket);
    void remove(const std::shared_ptr<session>& s);
    void maybe_done();
    // Backpressure: a client's queue crossed half of --client-buffer (+1) or fell back to a
    // quarter (-1). While any client is congested, sources that can wait do (pace_gate).
    void congestion(int delta);
    void arm_lag_timer(clock::duration after);
    void on_lag_timer();

    server& owner;
    asio::io_context& io;
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
    // Every live client. Sessions know their index for O(1) removal.
    std::vector<std::shared_ptr<session>> sessions;
    // The same by session id (for a backplane mapping an entry back to its sender).
    std::unordered_map<std::uint64_t, session*> by_id;
    std::uint64_t next_id = 1;
    // One read buffer for all clients: a read is consumed (decoded, copied where it must
    // outlive the call) before the next one starts, and everything runs on one thread. This
    // is what keeps an idle client down to its socket, decoder and two coroutine frames.
    std::unique_ptr<std::array<char, read_buffer_size>> read_buffer =
        std::make_unique<std::array<char, read_buffer_size>>();
    // One scratch buffer for all clients' writes, for the same reason: a write is a
    // synchronous non-blocking call, done with the buffer before the next one starts.
    std::unique_ptr<std::array<char, write_batch>> write_scratch =
        std::make_unique<std::array<char, write_batch>>();
    shared_frame welcome;
    // Clients in the middle of an inbound frame: the idle-timeout sweep visits only these.
    std::unordered_set<session*> mid_frame;
    asio::steady_timer sweep_timer;
    asio::steady_timer drain_timer;
    // Chat: names in use (only with --unique-names), and the last relays for newcomers.
    std::unordered_map<std::string, std::size_t> names;
    std::deque<shared_frame> history;
    std::size_t history_bytes = 0;
    bool shutting_down = false;
    // Backpressure: clients over half their queue, not yet left behind as lagging. Waiters
    // (the stdin source, publishing clients) wait on pace_gate, which never expires and is
    // cancelled when `congested` drops to 0; lag_timer bounds each client's hold on them.
    std::size_t congested = 0;
    std::size_t pace_waiters = 0;
    asio::steady_timer pace_gate;
    asio::steady_timer lag_timer;
    std::function<void()> done;
    clock::time_point last_accept_error_log{};
};

// One client: a reader() and a writer() coroutine sharing a bounded queue of shared frames.
class session : public std::enable_shared_from_this<session> {
public:
    session(server& srv, tcp::socket socket, std::string name)
        : srv_(srv), socket_(std::move(socket)), timer_(socket_.get_executor()),
          name_(std::move(name)), decoder_(first_frame_codec(srv.opts_), decode_mode::whole),
          queue_(srv.opts_.client_buffer, srv.opts_.slow_consumer) {}

    const std::string& name() const noexcept { return name_; }
    // Receives broadcasts: every client, but in chat mode only once it has sent its username.
    bool receives_broadcasts() const noexcept { return !srv_.opts_.chat.enabled || joined_; }
    // Chat mode: connected, username not received yet.
    bool awaiting_name() const noexcept { return srv_.opts_.chat.enabled && !joined_; }

    void start() {
        error_code ec;
        socket_.non_blocking(true, ec);
        socket_.set_option(tcp::no_delay(true), ec);
        if (srv_.impl_->welcome) deliver(srv_.impl_->welcome);
        if (awaiting_name()) {
            // A chat client has --idle-timeout to send its username: until then it is treated
            // as in the middle of a frame (otherwise a silent connection holds a slot forever).
            mid_frame_ = true;
            mid_frame_since_ = clock::now();
            srv_.impl_->mid_frame.insert(this);
        }
        auto ex = socket_.get_executor();
        asio::co_spawn(ex, [self = shared_from_this()] { return self->reader(); }, rethrow);
        asio::co_spawn(ex, [self = shared_from_this()] { return self->writer(); }, rethrow);
    }

    // Queues a frame, applying the slow-consumer policy when the queue is full.
    void deliver(const shared_frame& frame, std::size_t messages = 1) {
        if (closed_) return;
        auto& c = srv_.counters_;
        auto before = queue_.bytes();
        auto r = queue_.push(frame, messages);
        if (r.overflow) {
            ++c.slow_disconnects;
            stop(spdlog::level::warn, "slow consumer: " + std::to_string(before) +
                                          " bytes already queued, limit " +
                                          std::to_string(queue_.limit()) +
                                          " (--client-buffer); policy disconnect");
            return;
        }
        if (r.dropped_frames > 0) {
            c.slow_dropped_frames += r.dropped_frames;
            c.slow_dropped_bytes += r.dropped_bytes;
            if (dropped_frames_ == 0) {
                spdlog::warn("client {}: slow consumer, queue full ({} bytes, --client-buffer); "
                             "dropping oldest frames (policy drop-oldest)",
                             name_, before);
            }
            dropped_frames_ += r.dropped_frames;
            dropped_bytes_ += r.dropped_bytes;
        }
        if (r.queued && writer_waiting_) timer_.cancel();
        update_congestion();
    }

    // Backpressure bookkeeping, after the queue grew or shrank: over half of --client-buffer a
    // client holds back the sources that can wait (until it is back to a quarter, or for at
    // most --backpressure, after which it is left to the slow-consumer policy).
    void update_congestion() {
        if (srv_.opts_.backpressure.count() <= 0 || srv_.impl_->shutting_down) return;
        const std::size_t bytes = closed_ ? 0 : queue_.bytes();
        const std::size_t limit = queue_.limit();
        if (bytes > limit / 2) {
            if (!congested_ && !lagging_) {
                congested_ = true;
                congested_since_ = clock::now();
                srv_.impl_->congestion(+1);
            }
        } else if (bytes <= limit / 4) {
            lagging_ = false;
            if (congested_) {
                congested_ = false;
                srv_.impl_->congestion(-1);
            }
        }
    }

    // Called by the lag timer: a client congested since before `cutoff` stops holding the
    // sources back. True when it was.
    bool leave_behind(clock::time_point cutoff, clock::time_point& earliest) {
        if (!congested_) return false;
        if (congested_since_ > cutoff) {
            earliest = std::min(earliest, congested_since_);
            return false;
        }
        congested_ = false;
        lagging_ = true;
        return true;
    }

    std::size_t queued_bytes() const noexcept { return queue_.bytes(); }

    // Graceful close: flush what is queued, then close.
    void drain() {
        draining_ = true;
        if (writer_waiting_) timer_.cancel();
    }

    // Closes the connection now, with one log line saying why.
    void stop(spdlog::level::level_enum level, const std::string& reason) {
        if (closed_) return;
        closed_ = true;
        if (joined_) {
            spdlog::log(level, "{} left ({}): {}", escape_controls(username_, true), name_, reason);
            if (srv_.opts_.chat.unique_names) {
                auto& names = srv_.impl_->names;
                if (auto it = names.find(username_); it != names.end() && --it->second == 0) {
                    names.erase(it);
                }
            }
        } else if (!reason.empty()) {
            spdlog::log(level, "client {} disconnected: {}", name_, reason);
        }
        error_code ec;
        socket_.close(ec);
        timer_.cancel();
        if (mid_frame_) srv_.impl_->mid_frame.erase(this);
        update_congestion();
        --srv_.counters_.clients_current;
        asio::post(socket_.get_executor(),
                   [self = shared_from_this()] { self->srv_.impl_->remove(self); });
    }

    // Idle-timeout check, called by the server's sweep.
    void check_idle(clock::time_point now) {
        if (closed_ || !mid_frame_) return;
        auto timeout = srv_.opts_.idle_timeout;
        if (now - mid_frame_since_ < timeout) return;
        ++srv_.counters_.idle_timeouts;
        if (awaiting_name() && decoder_.at_frame_boundary()) {
            stop(spdlog::level::warn, "join timeout: no username within " +
                                          std::to_string(timeout.count()) +
                                          " ms (--idle-timeout)");
            return;
        }
        decoder_.finish();
        std::string detail = decoder_.error_message();
        if (detail.rfind("connection closed ", 0) == 0) detail.erase(0, 18);
        stop(spdlog::level::warn, "idle timeout: stuck in the middle of a frame for " +
                                      std::to_string(timeout.count()) + " ms (" + detail + ")");
    }

    std::size_t index = 0;
    std::uint64_t id = 0;

private:
    awaitable<void> reader() {
        auto& buf = *srv_.impl_->read_buffer;
        // What this client sends is relayed to the others: while one of them is congested,
        // stop reading (TCP then slows the sender down) instead of queueing more.
        const bool paced = srv_.opts_.publish || srv_.opts_.chat.enabled;
        auto& impl = *srv_.impl_;
        for (;;) {
            while (paced && impl.congested > 0 && !closed_) {
                ++impl.pace_waiters;
                ++srv_.counters_.backpressure_waits;
                co_await impl.pace_gate.async_wait(use_nothrow);
                --impl.pace_waiters;
            }
            if (closed_) co_return;
            // Read until the socket is empty before waiting: the reactor reports readiness by
            // edge, so a wait started with bytes already pending might never complete.
            bool empty = false;
            for (int i = 0; i < max_reads_per_turn; ++i) {
                if (paced && impl.congested > 0) break;  // waits at the top of the loop
                error_code ec;
                std::size_t n = socket_.read_some(asio::buffer(buf), ec);
                if (closed_) co_return;
                if (ec == asio::error::would_block || ec == asio::error::try_again) {
                    empty = true;
                    break;
                }
                if (ec == asio::error::eof) {
                    on_eof();
                    co_return;
                }
                if (ec) {
                    stop(spdlog::level::info, "read failed: " + ec.message());
                    co_return;
                }
                if (!on_bytes({buf.data(), n})) co_return;
            }
            if (empty) {
                auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, use_nothrow);
                if (closed_) co_return;
                if (ec) {
                    stop(spdlog::level::info, "wait failed: " + ec.message());
                    co_return;
                }
            } else {
                co_await asio::post(socket_.get_executor(), asio::use_awaitable);
                if (closed_) co_return;
            }
        }
    }

    awaitable<void> writer() {
        while (!closed_) {
            if (queue_.empty()) {
                if (draining_) {
                    finish_drain();
                    co_return;
                }
                writer_waiting_ = true;
                timer_.expires_at(asio::steady_timer::time_point::max());
                co_await timer_.async_wait(use_nothrow);
                writer_waiting_ = false;
                continue;
            }
            error_code ec;
            const bool blocked = write_queued(ec);
            if (ec) {
                stop(spdlog::level::info, "write failed: " + ec.message());
                co_return;
            }
            if (blocked) {
                auto [wec] = co_await socket_.async_wait(tcp::socket::wait_write, use_nothrow);
                if (closed_) co_return;
                if (wec) {
                    stop(spdlog::level::info, "wait failed: " + wec.message());
                    co_return;
                }
            } else if (!queue_.empty()) {
                // A full batch went out and more is queued: let other clients have a turn.
                co_await asio::post(socket_.get_executor(), asio::use_awaitable);
            }
        }
    }

    // One non-blocking write of up to write_batch bytes from the front of the queue (the
    // partly written front frame resumes where it stopped). True when the socket took less
    // than offered (full): wait for it to be writable.
    bool write_queued(error_code& ec) {
        std::array<asio::const_buffer, max_gather> bufs;
        std::size_t nb = 0, total = 0, used = 0;
        char* scratch = srv_.impl_->write_scratch->data();
        for (std::size_t i = 0; i < queue_.size() && nb < max_gather && total < write_batch;
             ++i) {
            const std::string& frame = *queue_[i];
            const std::size_t skip = i == 0 ? queue_.front_offset() : 0;
            const char* p = frame.data() + skip;
            const std::size_t len = frame.size() - skip;
            if (len < copy_below) {
                if (used + len > write_batch) break;
                std::memcpy(scratch + used, p, len);
                if (nb > 0 && static_cast<const char*>(bufs[nb - 1].data()) +
                                      bufs[nb - 1].size() == scratch + used) {
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
        std::size_t written =
            socket_.write_some(std::span<const asio::const_buffer>(bufs.data(), nb), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec = {};
            return true;
        }
        if (ec) return false;
        srv_.counters_.frames_out += queue_.consume(written);
        srv_.counters_.bytes_out += written;
        if (congested_ || lagging_) update_congestion();
        if (queue_.empty() && dropped_frames_ > 0) {
            spdlog::warn("client {} caught up after slow-consumer drops: {} frames ({} bytes) dropped",
                         name_, dropped_frames_, dropped_bytes_);
            dropped_frames_ = dropped_bytes_ = 0;
        }
        return written < total;
    }

    // Everything queued is written: send FIN after it, discard unread input (closing with
    // unread input would send RST, which can destroy data still in flight to the peer), close.
    void finish_drain() {
        error_code ec;
        socket_.shutdown(tcp::socket::shutdown_send, ec);
        auto& buf = *srv_.impl_->read_buffer;
        for (int i = 0; i < 64; ++i) {
            socket_.read_some(asio::buffer(buf), ec);
            if (ec) break;
        }
        stop(spdlog::level::info, "server shutting down (queue flushed)");
    }

    void on_eof() {
        if (decoder_.finish()) {
            count_decode_error();
            stop(spdlog::level::warn, "bad input: " + decoder_.error_message());
        } else {
            stop(spdlog::level::info, "closed by peer");
        }
    }

    void count_decode_error() {
        auto& c = srv_.counters_;
        ++c.decode_errors;
        auto ec = decoder_.error();
        if (ec.category() == codec_category() && ec.value() > 0 &&
            static_cast<std::size_t>(ec.value()) < c.decode_errors_by_kind.size()) {
            ++c.decode_errors_by_kind[static_cast<std::size_t>(ec.value())];
        }
    }

    // Decodes what arrived; false when the client was closed.
    bool on_bytes(std::span<const char> in) {
        auto& c = srv_.counters_;
        c.bytes_in += in.size();
        const bool chat = srv_.opts_.chat.enabled;
        bool completed = false;  // a frame ended in these bytes
        for (;;) {
            const char* from = in.data();
            const std::size_t before = in.size();
            auto ev = decoder_.next(in);
            if (chat) keep_header(from, before - in.size());
            if (ev == decode_event::need_more) break;
            if (ev == decode_event::error) {
                // The whole frames before the bad one are relayed, as if they had come alone.
                if (!publish_batch()) return false;
                count_decode_error();
                if (chat && !joined_ && decoder_.error() == errc::message_too_large) {
                    ++c.chat_names_rejected;
                    stop(spdlog::level::warn, "bad username: " + decoder_.error_message() +
                                                  " (--max-name)");
                } else {
                    stop(spdlog::level::warn, "bad input: " + decoder_.error_message());
                }
                return false;
            }
            ++c.messages_in;
            completed = true;
            if (!within_rate()) {
                if (!publish_batch()) return false;
                ++c.floods;
                stop(spdlog::level::warn, "flood: more than " +
                                              std::to_string(srv_.opts_.max_rate) +
                                              " messages per second (--max-rate)");
                return false;
            }
            if (chat) {
                if (!on_chat_frame(decoder_.payload())) return false;
            } else if (srv_.opts_.publish && !srv_.impl_->shutting_down) {
                if (!batch_frame(decoder_.payload())) return false;
            } else {
                spdlog::debug("client {}: ignored a {}-byte message (not --publish)", name_,
                              decoder_.payload().size());
            }
        }
        if (!publish_batch()) return false;
        if (decoder_.at_frame_boundary() && !awaiting_name()) {
            if (mid_frame_) srv_.impl_->mid_frame.erase(this);
            mid_frame_ = false;
        } else if (decoder_.at_frame_boundary()) {
            // Chat: still no username (see start()); the clock runs from the connection.
        } else if (!mid_frame_) {
            mid_frame_ = true;
            mid_frame_since_ = clock::now();
            srv_.impl_->mid_frame.insert(this);
        } else if (completed) {
            // Still mid-frame, but in a new frame: a steady sender whose reads never end on a
            // frame boundary is not a slowloris. The clock runs per frame.
            mid_frame_since_ = clock::now();
        }
        return true;
    }

    // --publish: the messages of one read are published together, encoded into one shared
    // buffer (one allocation and one queue entry per client for all of them, instead of one
    // per message). A batch stays well under --client-buffer so the slow-consumer policy
    // still works in small units.
    bool batch_frame(std::string_view payload) {
        const std::size_t frame_size = srv_.opts_.codec.header_size + payload.size();
        if (batch_ && batch_->size() + frame_size > relay_unit_bytes(srv_.opts_) && !publish_batch()) return false;
        if (!batch_) batch_ = std::make_shared<std::string>();
        if (auto ec = append_frame(*batch_, payload, srv_.opts_.codec)) {
            spdlog::error("cannot relay a {}-byte message: {}", payload.size(), ec.message());
        }
        return true;
    }

    // False when publishing closed this client.
    bool publish_batch() {
        if (!batch_) return true;
        srv_.publish(shared_frame(std::move(batch_)), this);
        batch_.reset();
        return !closed_;
    }

    // Chat: the decoder consumed `n` bytes at `p`, all of the current frame (whole mode stops
    // at a frame's end). Keeps its header bytes exactly as received, for the relay.
    void keep_header(const char* p, std::size_t n) {
        const std::size_t h = srv_.opts_.codec.header_size;
        std::size_t take = std::min(n, h - raw_header_fill_);
        std::memcpy(raw_header_.data() + raw_header_fill_, p, take);
        raw_header_fill_ += take;
    }

    // Chat: the first frame is the username, every later one a message relayed to the others
    // as the username frame and the message frame, both as received, in one buffer.
    bool on_chat_frame(std::string_view payload) {
        std::string_view header{raw_header_.data(), raw_header_fill_};
        raw_header_fill_ = 0;
        if (!joined_) return join(header, payload);
        if (srv_.impl_->shutting_down) return true;
        auto relay = std::make_shared<std::string>();
        relay->reserve(user_frame_->size() + header.size() + payload.size());
        relay->append(*user_frame_).append(header).append(payload);
        srv_.publish(shared_frame(std::move(relay)), this);
        return !closed_;
    }

    bool join(std::string_view header, std::string_view name) {
        auto& c = srv_.counters_;
        const auto& rules = srv_.opts_.chat;
        std::string problem;
        if (name.empty()) {
            problem = "bad username: empty";
        } else if (!count_code_points(name)) {
            problem = "bad username: not valid UTF-8: " + escape_bytes(name);
        } else if (name.size() > rules.max_name) {
            problem = "bad username: " + std::to_string(name.size()) + " bytes, more than " +
                      std::to_string(rules.max_name) + " (--max-name)";
        } else if (rules.unique_names && srv_.impl_->names.contains(std::string(name))) {
            problem = "username '" + escape_controls(name, true) + "' is already in use (--unique-names)";
        }
        if (!problem.empty()) {
            ++c.chat_names_rejected;
            stop(spdlog::level::warn, problem);
            return false;
        }
        username_ = name;
        auto frame = std::make_shared<std::string>(header);
        frame->append(name);
        user_frame_ = std::move(frame);
        if (rules.unique_names) ++srv_.impl_->names[username_];
        ++c.chat_joins;
        spdlog::info("{} joined from {}", escape_controls(username_, true), name_);
        // Messages may now be as long as --max-message.
        decoder_ = decoder(srv_.opts_.codec, decode_mode::whole);
        for (const auto& relay : srv_.impl_->history) {
            deliver(relay);
            if (closed_) return false;
        }
        joined_ = true;
        return true;
    }

    // Token bucket: max_rate messages per second, bursts up to max_rate.
    bool within_rate() {
        const auto rate = srv_.opts_.max_rate;
        if (rate == 0) return true;
        auto now = clock::now();
        if (rate_last_ == clock::time_point{}) {
            tokens_ = rate;
        } else {
            tokens_ = std::min<double>(
                rate, tokens_ + std::chrono::duration<double>(now - rate_last_).count() * rate);
        }
        rate_last_ = now;
        if (tokens_ < 1.0) return false;
        tokens_ -= 1.0;
        return true;
    }

    server& srv_;
    tcp::socket socket_;
    asio::steady_timer timer_;  // the writer sleeps on it; deliver() and drain() cancel it
    std::string name_;
    decoder decoder_;
    frame_queue queue_;
    std::uint64_t dropped_frames_ = 0, dropped_bytes_ = 0;  // this drop episode
    std::shared_ptr<std::string> batch_;  // --publish: this read's messages (publish_batch)
    clock::time_point mid_frame_since_{};
    clock::time_point rate_last_{};
    double tokens_ = 0;
    bool mid_frame_ = false;
    bool writer_waiting_ = false;
    bool draining_ = false;
    bool closed_ = false;
    // Backpressure (update_congestion): over half the queue and holding the sources back, or
    // left behind after --backpressure.
    bool congested_ = false;
    bool lagging_ = false;
    clock::time_point congested_since_{};
    // Chat mode.
    bool joined_ = false;
    std::string username_;
    shared_frame user_frame_;  // the username frame, header and name exactly as received
    std::array<char, max_header_size> raw_header_{};
    std::size_t raw_header_fill_ = 0;
};

void server::impl::remove(const std::shared_ptr<session>& s) {
    if (s->index >= sessions.size() || sessions[s->index] != s) return;
    by_id.erase(s->id);
    auto i = s->index;
    if (i + 1 != sessions.size()) {
        sessions[i] = std::move(sessions.back());
        sessions[i]->index = i;
    }
    sessions.pop_back();
    maybe_done();
}

void server::impl::maybe_done() {
    if (shutting_down && sessions.empty() && done) {
        drain_timer.cancel();
        auto fn = std::move(done);
        done = nullptr;
        fn();
    }
}

void server::impl::congestion(int delta) {
    if (delta > 0) {
        if (congested++ == 0) {
            // Closed: waiters wait until cancel(). Re-arming cancels nobody (there are no
            // waiters while nothing is congested).
            pace_gate.expires_at(asio::steady_timer::time_point::max());
            arm_lag_timer(owner.opts_.backpressure);
        }
    } else if (--congested == 0) {
        pace_gate.cancel();
        lag_timer.cancel();
    }
}

void server::impl::arm_lag_timer(clock::duration after) {
    lag_timer.expires_after(after);
    lag_timer.async_wait([this](error_code ec) {
        if (!ec) on_lag_timer();
    });
}

// A client that stayed over half its queue for --backpressure no longer holds the sources:
// it is now up to the slow-consumer policy whether it catches up, is cut off or misses frames.
void server::impl::on_lag_timer() {
    if (shutting_down) return;
    const auto now = clock::now();
    const auto cutoff = now - owner.opts_.backpressure;
    auto earliest = clock::time_point::max();
    for (auto& s : sessions) {
        if (!s->leave_behind(cutoff, earliest)) continue;
        --congested;
        ++owner.counters_.backpressure_timeouts;
        spdlog::log(pace_waiters > 0 ? spdlog::level::warn : spdlog::level::debug,
                    "client {}: queue over half of --client-buffer for {} ms; no longer "
                    "holding back the sources for it (--backpressure)",
                    s->name(), owner.opts_.backpressure.count());
    }
    if (congested == 0) {
        pace_gate.cancel();
    } else {
        arm_lag_timer(earliest + owner.opts_.backpressure - now);
    }
}

// ---------------------------------------------------------------------------------------------

server::server(asio::io_context& io, server_options opts)
    : impl_(std::make_unique<impl>(*this, io)), opts_(std::move(opts)) {
    if (!opts_.welcome.empty()) impl_->welcome = make_shared_frame(opts_.welcome, opts_.codec);
}

server::~server() = default;

std::size_t server::client_count() const noexcept { return impl_->sessions.size(); }

tcp::endpoint server::listen(const tcp::endpoint& ep) {
    auto a = std::make_unique<tcp::acceptor>(impl_->io);
    a->open(ep.protocol());
    a->set_option(tcp::acceptor::reuse_address(true));
    if (ep.address().is_v6() && ep.address().is_unspecified()) {
        error_code ec;
        a->set_option(asio::ip::v6_only(false), ec);
    }
    a->bind(ep);
    a->listen(asio::socket_base::max_listen_connections);
    auto bound = a->local_endpoint();
    impl_->acceptors.push_back(std::move(a));
    return bound;
}

tcp::endpoint server::listen_any(std::uint16_t port) {
    try {
        return listen({tcp::v6(), port});
    } catch (const system_error& e) {
        if (e.code() == asio::error::address_in_use) throw;
        spdlog::debug("IPv6 unavailable ({}), listening on IPv4 only", e.code().message());
        return listen({tcp::v4(), port});
    }
}

awaitable<void> server::impl::accept_loop(tcp::acceptor& acceptor) {
    asio::steady_timer backoff(acceptor.get_executor());
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
        if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
        if (ec) {
            // Typically EMFILE/ENFILE: the connection stays in the backlog. Log at most once a
            // second and wait a little instead of spinning; leaving clients free descriptors.
            ++owner.counters_.accept_errors;
            auto now = clock::now();
            if (now - last_accept_error_log > std::chrono::seconds(1)) {
                last_accept_error_log = now;
                spdlog::error("accept failed: {}; retrying", ec.message());
            }
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        admit(std::move(socket));
    }
}

void server::impl::admit(tcp::socket socket) {
    auto& c = owner.counters_;
    error_code ec;
    auto peer = socket.remote_endpoint(ec);
    std::string name = ec ? "(unknown peer)" : to_string(peer);
    if (shutting_down) return;
    if (owner.opts_.max_clients != 0 && sessions.size() >= owner.opts_.max_clients) {
        ++c.clients_rejected;
        spdlog::warn("client {} rejected: {} clients connected, the limit (--max-clients)", name,
                     sessions.size());
        socket.close(ec);
        return;
    }
    ++c.clients_accepted;
    ++c.clients_current;
    auto s = std::make_shared<session>(owner, std::move(socket), std::move(name));
    s->index = sessions.size();
    s->id = next_id++;
    sessions.push_back(s);
    by_id.emplace(s->id, s.get());
    spdlog::info("client {} connected ({} clients)", s->name(), sessions.size());
    s->start();
}

void server::start() {
    for (auto& a : impl_->acceptors) {
        asio::co_spawn(impl_->io, impl_->accept_loop(*a), rethrow);
    }
    if (opts_.idle_timeout.count() > 0) {
        auto period = std::clamp(opts_.idle_timeout / 4, std::chrono::milliseconds(20),
                                 std::chrono::milliseconds(1000));
        asio::co_spawn(
            impl_->io,
            [this, period]() -> awaitable<void> {
                for (;;) {
                    impl_->sweep_timer.expires_after(period);
                    auto [ec] = co_await impl_->sweep_timer.async_wait(use_nothrow);
                    if (ec || impl_->shutting_down) co_return;
                    auto now = clock::now();
                    std::vector<session*> stuck(impl_->mid_frame.begin(),
                                                impl_->mid_frame.end());
                    for (auto* s : stuck) s->check_idle(now);
                }
            },
            rethrow);
    }
}

void server::publish(std::string_view payload, const session* origin) {
    if (auto frame = encode_message(payload, opts_.codec)) publish(frame, origin);
}

void server::publish(const shared_frame& frames, const session* origin) {
    if (ingress_) {
        ingress_(frames, origin);
    } else {
        broadcast(frames, origin);
    }
}

std::uint64_t server::session_id(const session* s) noexcept { return s ? s->id : 0; }

const session* server::find_session(std::uint64_t id) const noexcept {
    auto it = impl_->by_id.find(id);
    return it == impl_->by_id.end() ? nullptr : it->second;
}

void server::broadcast(std::string_view payload, const session* origin) {
    if (auto frame = encode_message(payload, opts_.codec)) broadcast(frame, origin);
}

void server::broadcast(const shared_frame& frame, const session* origin) {
    // A chat relay is one message in two frames; otherwise a unit may be a batch of messages
    // (--publish batches a read's worth).
    const std::size_t messages = opts_.chat.enabled ? 1 : frames_in(*frame, opts_.codec);
    counters_.messages_broadcast += messages;
    if (opts_.chat.enabled && opts_.chat.history > 0) {
        auto& h = *impl_;
        h.history.push_back(frame);
        h.history_bytes += frame->size();
        while (h.history.size() > opts_.chat.history ||
               (h.history_bytes > opts_.client_buffer / 2 && h.history.size() > 1)) {
            h.history_bytes -= h.history.front()->size();
            h.history.pop_front();
        }
    }
    // By index: a delivery may close a slow client, but removal is deferred, so the vector
    // does not change under us.
    auto& sessions = impl_->sessions;
    for (std::size_t i = 0; i < sessions.size(); ++i) {
        auto& s = *sessions[i];
        if (&s == origin || !s.receives_broadcasts()) continue;
        s.deliver(frame, messages);
        counters_.deliveries += messages;
    }
}

bool server::congested() const noexcept { return impl_->congested > 0; }

void server::when_ready(std::function<void()> fn) {
    if (impl_->congested == 0) {
        asio::post(impl_->io, std::move(fn));
        return;
    }
    ++impl_->pace_waiters;
    ++counters_.backpressure_waits;
    impl_->pace_gate.async_wait([this, fn = std::move(fn)](error_code) {
        --impl_->pace_waiters;
        fn();
    });
}

std::vector<std::size_t> server::client_queue_bytes() const {
    std::vector<std::size_t> out;
    out.reserve(impl_->sessions.size());
    for (const auto& s : impl_->sessions) out.push_back(s->queued_bytes());
    return out;
}

void server::shutdown(std::chrono::milliseconds drain_timeout, std::function<void()> done) {
    if (impl_->shutting_down) return;
    impl_->shutting_down = true;
    impl_->done = std::move(done);
    for (auto& a : impl_->acceptors) {
        error_code ec;
        a->close(ec);
    }
    impl_->sweep_timer.cancel();
    // Nothing new is published while the queues drain: let nobody wait for them.
    impl_->congested = 0;
    impl_->pace_gate.cancel();
    impl_->lag_timer.cancel();
    spdlog::info("shutting down: flushing {} clients (at most {} ms)", impl_->sessions.size(),
                 drain_timeout.count());
    for (auto& s : impl_->sessions) s->drain();
    impl_->drain_timer.expires_after(drain_timeout);
    impl_->drain_timer.async_wait([this](error_code ec) {
        if (!ec) close_all("drain timeout: queue not flushed (--drain-timeout)");
    });
    asio::post(impl_->io, [this] { impl_->maybe_done(); });
}

void server::close_all(const std::string& reason) {
    auto sessions = impl_->sessions;  // stop() defers removal, but be safe
    for (auto& s : sessions) s->stop(spdlog::level::warn, reason);
}

}  // namespace framecast::io
