// The process-wide memory budget (server_options::memory_limit): one account of what clients
// can make the server hold, shared by the rooms. What it counts:
//   - inbound: partial frames the decoders gather (session),
//   - frames: the bytes of every broadcast unit still referenced by a queue or the history,
//     counted once however many queues hold it (track() wraps the unit),
//   - queue entries: a fixed cost per entry in every client's queue (hub),
//   - external: the backplane's pending appends (an atomic its thread keeps).
// What the rooms do at the limit (see docs/security.md): sessions holding inbound bytes stop
// reading, the hub applies the slow-consumer policy to the largest queues first, the listener
// refuses new connections. Single-threaded (the server's thread) except `external`.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "framecast/io/relay_unit.hpp"

namespace framecast::io {

class memory_budget : public std::enable_shared_from_this<memory_budget> {
public:
    // What one queue entry costs beyond its bytes: the deque slot and the shared_ptr copy.
    static constexpr std::size_t entry_cost = 48;

    explicit memory_budget(std::size_t limit) noexcept : limit_(limit) {}

    std::size_t limit() const noexcept { return limit_; }
    std::size_t used() const noexcept {
        return inbound_ + frames_ + entries_ * entry_cost + external_bytes();
    }
    // At or past the limit (never with a limit of 0).
    bool over() const noexcept { return limit_ != 0 && used() >= limit_; }
    // What the queues cost: the part the slow-consumer policy can give back.
    std::size_t outbound() const noexcept { return frames_ + entries_ * entry_cost; }
    std::size_t inbound() const noexcept { return inbound_; }

    void add_inbound(std::size_t n) noexcept { inbound_ += n; }
    void sub_inbound(std::size_t n) noexcept { inbound_ -= n; }
    void add_entries(std::size_t n) noexcept { entries_ += n; }
    void sub_entries(std::size_t n) noexcept { entries_ -= n; }

    // The same bytes, counted here until the last copy of the returned pointer is gone.
    relay_unit track(const relay_unit& unit) {
        if (!unit) return unit;
        const std::size_t n = unit.bytes->size();
        frames_ += n;
        auto self = shared_from_this();
        shared_frame tracked(unit.bytes.get(), [self, keep = unit.bytes, n](const std::string*) {
            self->frames_ -= n;
        });
        return {std::move(tracked), unit.messages, unit.origin};
    }

    // Bytes held on another thread (the backplane's pending appends), read when checking.
    void set_external(const std::atomic<std::uint64_t>* bytes) noexcept { external_ = bytes; }

private:
    std::size_t external_bytes() const noexcept {
        return external_ ? static_cast<std::size_t>(external_->load(std::memory_order_relaxed))
                         : 0;
    }

    std::size_t limit_;
    std::size_t inbound_ = 0;
    std::size_t frames_ = 0;
    std::size_t entries_ = 0;
    const std::atomic<std::uint64_t>* external_ = nullptr;
};

}  // namespace framecast::io
