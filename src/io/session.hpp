// One client: a reader() and a writer() coroutine over a transport. The reader decodes and
// hands each message on (the hub's ingress, the chat room, the rate limiter decide); the writer
// sends the member's queue. Everything else lives in the collaborators it calls.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "channel_room.hpp"
#include "chat_room.hpp"
#include "framecast/codec.hpp"
#include "framecast/io/server.hpp"
#include "framecast/io/transport.hpp"
#include "hub.hpp"
#include "log_throttle.hpp"
#include "member.hpp"
#include "memory_budget.hpp"
#include "publisher_table.hpp"
#include "rate_limiter.hpp"
#include "resume_room.hpp"

namespace framecast::io {

// Reads per wake-up before yielding to other clients, and the shared read buffer's size.
inline constexpr int max_reads_per_turn = 16;
inline constexpr std::size_t read_buffer_size = 64 * 1024;
// One write: small frames are copied into the shared scratch buffer (one contiguous buffer,
// however many frames), large ones are passed by reference; at most max_gather buffers and
// about write_batch bytes per call.
inline constexpr std::size_t max_gather = 64;
inline constexpr std::size_t write_batch = 256 * 1024;
inline constexpr std::size_t copy_below = 16 * 1024;

class session;

// Clients in the middle of an inbound frame (or, in chat, without a username yet): the sweep
// visits only these and closes those stuck longer than the idle timeout.
class idle_sweep {
public:
    // Runs when there is an idle timeout or a minimum inbound rate to check (`window`).
    idle_sweep(asio::io_context& io, std::chrono::milliseconds timeout,
               std::chrono::milliseconds window);
    void start();
    void stop() { timer_.cancel(); stopped_ = true; }
    void watch(session* s) { stuck_.insert(s); }
    void unwatch(session* s) { stuck_.erase(s); }

private:
    asio::steady_timer timer_;
    std::chrono::milliseconds period_{0};  // 0: no sweep
    std::unordered_set<session*> stuck_;
    bool stopped_ = false;
};

// What every session shares, owned by the server.
struct session_context {
    const server_options& opts;
    server_counters& counters;
    hub& clients;
    chat_room* chat;  // null unless chat mode
    channel_room* channels;  // null unless channels mode
    resume_room* resume;     // null unless --resume
    publisher_table* publishers;  // null unless --publish-acks
    // Publish acks through a shared log (server::set_publish_log): asks it for a publisher's
    // last number; empty without one.
    const server::publisher_attach_fn& publish_log;
    idle_sweep& sweep;
    // Where a client's published messages go (the server's ingress: hub or backplane).
    std::function<void(const relay_unit&, const member*)> publish;
    // True while published messages stay on this node (no backplane ingress): only then may a
    // publish that no local member receives be dropped before it becomes a unit.
    std::function<bool()> publishes_stay_local;
    // A closed session leaves the registry (posted, so never under a broadcast's loop).
    std::function<void(member&)> remove;
    memory_budget& budget;
    // One read buffer for all clients: a read is consumed (decoded, copied where it must
    // outlive the call) before the next one starts, and everything runs on one thread. This
    // keeps an idle client down to its transport, decoder and two coroutine frames.
    std::array<char, read_buffer_size>& read_buffer;
    // One scratch buffer for all clients' writes, for the same reason: a write is a
    // synchronous non-blocking call, done with the buffer before the next one starts.
    std::array<char, write_batch>& write_scratch;
    relay_unit welcome;
    bool shutting_down = false;
    // Per-connection warnings, bounded in volume: one throttle per close reason and, for bad
    // input, per kind of decode error (so each kind still shows).
    std::array<log_throttle, 16 * (errc_count + 1)> close_logs{};
    // The decoder of a chat client's first frame: a header announcing more than the name
    // limit fails before the name is buffered.
    codec_options first_frame_codec;
};

class session final : public member {
public:
    session(session_context& ctx, std::unique_ptr<transport> t, std::string peer);

    // Queues the welcome, and starts the reader and the writer.
    void start();
    void close(close_reason why, std::string_view detail = {}) override;
    void drain() override;
    void release_hold() override;
    // Called by the sweep: closes the client if stuck mid-frame for the idle timeout.
    void check_idle(std::chrono::steady_clock::time_point now);
    // Publish acks through a shared log (session_publish.cpp): the numbers of the unit being
    // published now, and the log's answers.
    std::optional<backplane::publisher_unit> take_publisher_unit();
    void on_publisher_receipt(const backplane::publisher_receipt& r);

private:
    void wake_writer() override;
    void spawn_writer();
    void write_now();
    void spawn_reader();
    void resume_reading(error_code ec);
    asio::awaitable<void> reader();
    asio::awaitable<void> writer();
    // Reads up to max_reads_per_turn times; true when the transport has nothing more now.
    bool read_turn(bool paced, bool& stop);
    bool write_queued(error_code& ec);
    void finish_drain();
    void on_eof();
    bool on_bytes(std::span<const char> in);
    bool on_frames(std::span<const char> in);
    bool on_message(std::string_view payload);
    bool on_decode_error();
    bool on_chat_frame(std::string_view payload);
    bool on_channel_frame(std::string_view payload);  // session_channels.cpp
    // Resume (session_resume.cpp): watches the first frame for a request; true when `ev`
    // was taken by it (the caller goes on to the next event), false to handle it as usual.
    bool resume_first_frame(decode_event ev);
    // Publish acks (session_publish.cpp): the "@publish" request, each numbered message
    // (false: a duplicate, dropped), the coalesced ack after a read, leaving the table.
    void publish_request(std::string_view payload);
    bool publish_accepts();
    void publish_ack();
    void publish_leave();
    void publish_refuse(const std::string& why, std::string_view payload);
    void publish_answer(std::uint64_t last);
    bool publish_hold(std::span<const char> rest);
    void publish_log_unit();
    void publish_log_end(std::size_t unit_bytes);
    bool flush_batch();
    bool channel_hold(std::span<const char> rest);
    bool on_streamed(decode_event ev, std::size_t& ended);
    bool over_rate(std::size_t bytes);
    void track_mid_frame(bool completed);
    void account_inbound() noexcept;
    bool check_min_rate(std::chrono::steady_clock::time_point now);
    // At the memory limit a client holding a partial frame is not read from.
    bool held_by_budget() const noexcept {
        return inbound_accounted_ > 0 && ctx_.budget.over();
    }
    // Frames from this client are discarded (no --publish, no chat): decoded in streaming
    // mode, never buffered.
    bool discards_input() const noexcept {
        return !ctx_.opts.publish && !ctx_.chat && !ctx_.channels;
    }
    bool awaiting_name() const noexcept { return ctx_.chat && !seat_.joined; }

    session_context& ctx_;
    std::unique_ptr<transport> transport_;
    decoder decoder_;
    rate_limiter limiter_;
    rate_limiter byte_limiter_;  // max_rate_bytes, a token per byte
    relay_unit_builder batch_;  // publishing and chat: this read's messages, one unit
    std::size_t inbound_accounted_ = 0;  // the decoder's buffer, as the memory budget has it
    // Minimum inbound rate while mid-frame: bytes read by the start of the current window.
    std::uint64_t bytes_read_ = 0;
    std::uint64_t rate_mark_bytes_ = 0;
    std::chrono::steady_clock::time_point rate_mark_{};
    std::chrono::steady_clock::time_point mid_frame_since_{};
    bool mid_frame_ = false;
    bool draining_ = false;
    bool send_shut_ = false;  // draining: shutdown_send() is done, its bytes may still wait
    // Chat: the seat, and the header bytes of the frame being decoded, as received.
    chat_seat seat_;
    channel_seat channel_seat_;
    std::string channel_held_;  // what came after a held RESUME in its read (channel_seat::held)
    // Resume: the first frame is still to be checked for a request (captured here when input
    // is streamed, at most a request's length), and the client's place once it asked.
    bool first_frame_open_ = false;
    bool first_frame_capture_ = false;
    std::string first_frame_;
    resume_seat resume_seat_;
    // Publish acks: this connection's publisher (null: it did not ask), its nonce, the number
    // of its next message, and the last number acknowledged to it.
    publisher_table::entry* publisher_ = nullptr;
    std::string publish_nonce_;
    std::uint64_t publish_next_ = 0;
    std::uint64_t publish_acked_ = 0;
    bool publish_refused_ = false;
    // With a shared log: the answer awaited, acks after the log confirmed (session_publish.cpp).
    struct publish_log_state {
        bool waiting = true;     // the request went to the log, not answered yet
        std::string held;        // what the client sent after the request meanwhile (one read)
        std::uint64_t unit_first = 0;   // the first number not yet in a unit sent to the log
        std::uint64_t inflight = 0;     // units sent to the log, not yet confirmed
        std::uint64_t confirmed = 0;    // the log has this connection's messages up to here
        std::vector<std::uint64_t> ends;  // the unit being built: where each message ends
        std::optional<backplane::publisher_unit> unit;  // the unit being published now
    };
    std::unique_ptr<publish_log_state> publish_log_;
};

}  // namespace framecast::io
