// What the hub and the chat room see of a client: a mailbox (deliver a unit), a way to close it
// with a reason, and who it is. They never call into a session's loops; a session is one kind
// of member (the only one today), so the dependency runs session -> hub / chat room, never back.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "close_reason.hpp"
#include "framecast/io/frame_queue.hpp"
#include "framecast/io/relay_unit.hpp"
#include "permissions.hpp"

namespace framecast::io {

class hub;

class member : public std::enable_shared_from_this<member> {
public:
    member(hub& h, std::string peer, bool receives_broadcasts);
    virtual ~member() = default;
    member(const member&) = delete;
    member& operator=(const member&) = delete;

    // Queues `unit`, applying the slow-consumer policy when the queue is full (which may close
    // this member). Does nothing once closed.
    void deliver(const relay_unit& unit);
    // Closes now, with one log line saying why (`detail` follows the reason's text).
    virtual void close(close_reason why, std::string_view detail = {}) = 0;
    // Closes once everything queued is written (graceful shutdown).
    virtual void drain() = 0;
    // A room held this member's input (channel_seat::held): it reads on from where it stopped.
    virtual void release_hold() {}

    std::size_t queued_bytes() const noexcept { return queue_.bytes(); }
    bool closed() const noexcept { return closed_; }
    // Unique for the server's lifetime, never reused, never 0.
    std::uint64_t id() const noexcept { return id_; }
    // The peer's address as logged, e.g. "127.0.0.1:50312".
    const std::string& peer() const noexcept { return peer_; }
    // Chat: the username once joined; empty otherwise.
    const std::string& name() const noexcept { return name_; }
    // Auth: who the client proved to be, and when that proof expires (epoch: never).
    const std::string& subject() const noexcept { return subject_; }
    std::chrono::system_clock::time_point expires() const noexcept { return expires_; }
    void set_identity(std::string subject, std::chrono::system_clock::time_point expires,
                      std::shared_ptr<const permissions> grants = {}) {
        subject_ = std::move(subject);
        expires_ = expires;
        grants_ = std::move(grants);
    }
    // What its token lets it publish and subscribe to (--channels); null: anything.
    const permissions* grants() const noexcept { return grants_.get(); }
    bool told_expiry = false;  // the expiry notice is queued; the next sweep closes it
    // No more broadcasts reach it (what is queued is still written): the expiry notice is the
    // last thing an expired client receives.
    void stop_receiving() noexcept { receives_ = false; }

protected:
    // The writer stops while the queue is empty (an idle client holds no writer, no timer);
    // a delivery starts it again.
    virtual void wake_writer() = 0;
    // The writer wrote `n` bytes from the front of the queue: counts, backpressure, accounting.
    void on_written(std::size_t n);
    // Marks closed and takes the queue out of the hub's accounting. False if already closed.
    bool mark_closed() noexcept;

    hub& hub_;
    frame_queue queue_;
    bool closed_ = false;
    bool writer_waiting_ = false;  // the writer stopped on an empty queue: wake_writer() restarts it

private:
    friend class hub;
    friend class chat_room;
    friend class channel_room;
    std::uint64_t id_ = 0;
    std::size_t index_ = 0;  // in the hub's registry, for O(1) removal
    std::string peer_;
    std::string name_;
    std::string subject_;
    std::chrono::system_clock::time_point expires_{};
    std::shared_ptr<const permissions> grants_;
    bool receives_;          // broadcasts reach it (chat: only once joined)
    // Backpressure: over half of the queue and holding the sources back, or left behind.
    bool congested_ = false;
    bool lagging_ = false;
    std::chrono::steady_clock::time_point congested_since_{};
    // Fair backpressure: how long it held the sources within the window that began at
    // hold_window_start_; once that reaches `backpressure` it no longer holds them until the
    // window ends (a client cannot cycle its queue to hold everyone back indefinitely).
    std::chrono::steady_clock::duration held_{};
    std::chrono::steady_clock::time_point hold_window_start_{};
    bool warned_lagging_ = false;  // the warning is logged once per client
    // While congested: the publishers whose traffic fills its queue (hub::blame).
    std::vector<std::uint64_t> blamed_;
    bool blames_all_ = false;
    // The current drop episode (drop-oldest), logged when the client catches up.
    std::uint64_t dropped_frames_ = 0, dropped_bytes_ = 0;
    std::size_t accounted_bytes_ = 0;  // this queue's share of hub::queued_bytes_total()
    std::size_t accounted_entries_ = 0;  // and its entries' share of the memory budget
};

}  // namespace framecast::io
