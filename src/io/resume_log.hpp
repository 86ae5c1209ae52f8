// The resume history (docs/resume.md): the recent relay units of one stream, each with the
// offset of its first message, bounded by messages and bytes. It holds the units the hub
// broadcast (shared, not copied); reading copies a bounded piece for one resuming client.
// No I/O here, so it is unit-tested on its own (tests/unit/resume_log_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <string>

#include "framecast/codec.hpp"
#include "framecast/io/relay_unit.hpp"

namespace framecast::io {

class memory_budget;

struct resume_limits {
    // Messages kept at least (the resume window), unless `bytes` is reached first.
    std::size_t messages = 100'000;
    // Bytes of frames kept at most (always at least the newest unit).
    std::size_t bytes = 64u << 20;
};

// Byte position of message `skip` (0-based) inside `unit` (`frames_per_message` frames each:
// 1 for a plain stream, 2 for channels).
std::size_t message_position(const relay_unit& unit, std::size_t skip, const codec_options& codec,
                             std::size_t frames_per_message = 1);

class resume_log {
public:
    // `budget` (may be null) counts one queue-entry cost per unit held; the units' bytes are
    // counted by the budget's track() wrapper they arrive in.
    // `frames_per_message`: 1 for a plain stream, 2 for channels ((channel, payload) pairs).
    resume_log(resume_limits limits, const codec_options& codec, memory_budget* budget = nullptr,
               std::size_t frames_per_message = 1);
    ~resume_log();
    resume_log(const resume_log&) = delete;
    resume_log& operator=(const resume_log&) = delete;

    // Keeps `unit` (its messages get the next offsets) and returns its first offset. Offsets
    // start at 1 and grow by one per message; 0 means "none".
    std::uint64_t append(const relay_unit& unit);
    // Keeps `unit` at offset `first`, numbered by a shared log (a backplane): false, and not
    // kept, when that offset is already held or passed (a repeat). A hole before it (the log
    // skipped offsets this node never saw) empties the history first: what is held stays
    // contiguous, and a client asking for the hole is told it is a gap.
    bool append_at(std::uint64_t first, const relay_unit& unit);
    // Drops everything held; the next message gets offset `next` (a new epoch of a shared log).
    void reset(std::uint64_t next);

    // The offset the next message will get.
    std::uint64_t next() const noexcept { return next_; }
    // The oldest offset still held (== next() when empty).
    std::uint64_t oldest() const noexcept { return entries_.empty() ? next_ : entries_.front().first; }
    std::size_t messages() const noexcept { return messages_; }
    std::size_t bytes() const noexcept { return bytes_; }
    std::size_t units() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    // Drops the oldest unit held (a bound shared by several logs: channel_history); returns
    // how many messages and bytes went. The log must not be empty.
    std::pair<std::size_t, std::size_t> drop_oldest();

    // The frames of the messages from `from` on (from oldest() if `from` is older), whole
    // messages, at least one and about `max_bytes` at most, appended to `out`. Returns how
    // many messages were appended and sets `first` to the first one's offset (0 when nothing
    // is held from `from` on).
    std::size_t read(std::uint64_t from, std::size_t max_bytes, std::string& out,
                     std::uint64_t& first) const;

private:
    struct entry {
        std::uint64_t first;
        relay_unit unit;
    };
    void evict();
    void pop_front();
    // Byte position of message `skip` (0-based) inside `unit`.
    std::size_t position(const relay_unit& unit, std::size_t skip) const;

    resume_limits limits_;
    codec_options codec_;
    memory_budget* budget_;
    std::size_t frames_per_message_;
    std::deque<entry> entries_;
    std::uint64_t next_ = 1;
    std::size_t messages_ = 0;
    std::size_t bytes_ = 0;
};

}  // namespace framecast::io
