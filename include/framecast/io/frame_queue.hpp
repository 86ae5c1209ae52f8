// A client's outbound queue: shared encoded frames, bounded in bytes, with the slow-consumer
// policy applied on push. No I/O here, so it is unit-tested on its own.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "framecast/io/relay_unit.hpp"
#include "framecast/io/ring.hpp"

namespace framecast::io {

// What to do when a client's outbound queue would grow past its byte limit.
enum class slow_consumer_policy {
    disconnect,   // close the client (it can reconnect; it never sees a gap silently)
    drop_oldest,  // drop the oldest whole frames not yet being written (never a partial one)
};

class frame_queue {
public:
    struct push_result {
        bool queued = true;            // the new frame is in the queue
        bool overflow = false;         // disconnect policy: the frame did not fit
        std::size_t dropped_frames = 0;  // drop-oldest: messages dropped (may include the new ones)
        std::size_t dropped_bytes = 0;
    };

    frame_queue(std::size_t limit_bytes, slow_consumer_policy policy)
        : limit_(limit_bytes), policy_(policy) {}

    // Queues `f` unless that would pass the byte limit; then applies the policy. A frame partly
    // written (see consume) is never dropped: the peer has part of it already. `f` may
    // hold several frames sent as one unit; `messages` is how many, for the counts reported.
    push_result push(const shared_frame& f, std::size_t messages = 1) {
        return push(relay_unit{f, messages});
    }
    push_result push(const relay_unit& unit) {
        const shared_frame& f = unit.bytes;
        const std::size_t messages = unit.messages;
        push_result r;
        if (bytes_ + f->size() > limit_) {
            if (policy_ == slow_consumer_policy::disconnect) {
                r.queued = false;
                r.overflow = true;
                return r;
            }
            while (bytes_ + f->size() > limit_ && frames_.size() > in_flight()) {
                const relay_unit& oldest = frames_[in_flight()];
                r.dropped_frames += oldest.messages;
                r.dropped_bytes += oldest.bytes->size();
                bytes_ -= oldest.bytes->size();
                frames_.erase(in_flight());
            }
            if (bytes_ + f->size() > limit_) {
                r.dropped_frames += messages;
                r.dropped_bytes += f->size();
                r.queued = false;
                return r;
            }
        }
        frames_.push_back(unit);
        bytes_ += f->size();
        return r;
    }

    // Writing: the writer sends from the front, as much as the socket takes (frames copied into
    // a buffer of its own or gathered in place), and reports it with consume(). Bytes of the
    // front frame the peer already has:
    std::size_t front_offset() const noexcept { return front_offset_; }
    // `n` more bytes were written, starting at front_offset() of the front frame: removes the
    // frames written whole and returns how many messages they held; a frame left partly
    // written stays pinned (it is never dropped) until the rest of it is written.
    std::size_t consume(std::size_t n) {
        std::size_t done = 0;
        while (n > 0 && !frames_.empty()) {
            const std::size_t left = frames_.front().bytes->size() - front_offset_;
            if (n < left) {
                front_offset_ += n;
                break;
            }
            n -= left;
            bytes_ -= frames_.front().bytes->size();
            done += frames_.front().messages;
            frames_.pop_front();
            front_offset_ = 0;
        }
        return done;
    }

    // Drops every frame the policy may drop (all but a partly written front one); returns
    // how many messages and bytes went, as push() reports them.
    push_result drop_droppable() {
        push_result r;
        while (frames_.size() > in_flight()) {
            const relay_unit& oldest = frames_[in_flight()];
            r.dropped_frames += oldest.messages;
            r.dropped_bytes += oldest.bytes->size();
            bytes_ -= oldest.bytes->size();
            frames_.erase(in_flight());
        }
        return r;
    }
    // Forgets everything (a closed client: its frames may be freed at once).
    void clear() noexcept {
        while (!frames_.empty()) frames_.pop_front();
        bytes_ = 0;
        front_offset_ = 0;
    }

    const shared_frame& operator[](std::size_t i) const { return frames_[i].bytes; }
    const relay_unit& unit(std::size_t i) const { return frames_[i]; }
    bool empty() const noexcept { return frames_.empty(); }
    std::size_t size() const noexcept { return frames_.size(); }
    std::size_t bytes() const noexcept { return bytes_; }
    // Frames the policy may not drop: the front one while it is partly written.
    std::size_t in_flight() const noexcept { return front_offset_ > 0 ? 1 : 0; }
    std::size_t limit() const noexcept { return limit_; }

private:
    ring<relay_unit> frames_;  // not std::deque: see ring.hpp
    std::size_t bytes_ = 0;
    std::size_t front_offset_ = 0;  // bytes of the front frame written (consume())
    std::size_t limit_;
    slow_consumer_policy policy_;
};

}  // namespace framecast::io
