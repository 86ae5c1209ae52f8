// The per-channel resume history (`serve --channels --resume`, docs/resume.md, "Channels"):
// every channel numbers its own messages (1, 2, ...) and keeps its own window (a resume_log of
// (channel, payload) pairs), and one process-wide bound on the messages and bytes of all the
// channels' histories together keeps memory bounded however many channels there are: past it,
// the oldest unit of all (whichever channel holds it) goes first. Every message also gets a
// process-wide sequence number (1, 2, ... over all channels), so that a client can ask for
// "every channel's messages after sequence S" without knowing the channels (RESUME *). No I/O:
// unit-tested on its own (tests/unit/channel_history_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "resume_log.hpp"

namespace framecast::io {

struct channel_history_limits {
    std::size_t window = 100'000;            // per channel: messages kept at least, unless ...
    std::size_t total_messages = 1'000'000;  // ... all channels together hold this many, or
    std::size_t total_bytes = 64u << 20;     // ... this many bytes of frames
    // Channels remembered (their next offset) once their history is empty; past it the idle
    // ones are forgotten (see next()).
    std::size_t idle_channels = 100'000;
};

class channel_history {
public:
    channel_history(channel_history_limits limits, const codec_options& codec,
                    memory_budget* budget = nullptr);
    ~channel_history();
    channel_history(const channel_history&) = delete;
    channel_history& operator=(const channel_history&) = delete;

    // Keeps `unit` (pairs of `channel`) and returns its first message's offset in `channel`.
    std::uint64_t append(std::string_view channel, const relay_unit& unit);
    // With a shared log (serve --channels --resume --backplane), which numbers the messages:
    // keeps `unit` at `offset` in `channel`, its first message being `sequence` in the log.
    // False, and not kept, for a repeat (a sequence already passed). An offset other than the
    // channel's next (a channel the log forgot and numbers again above its old offsets, an
    // entry refused here, or numbers that disagree with a forged entry held before) empties
    // the channel's history first: what is held stays contiguous, and the hole is reported.
    bool append_at(std::string_view channel, std::uint64_t offset, std::uint64_t sequence,
                   const relay_unit& unit);
    // Drops everything: the log's history starts at sequence `first` (its epoch is new, or
    // this node holds nothing older). A channel not held from then on had its messages before
    // `first`, so its offsets are below it (a channel's offsets never pass the log's) and a
    // client older than `first` may have missed messages of channels not held.
    void restart(std::uint64_t first);
    // With a shared log, after restart() and the units of its history: the log numbers
    // `channel` and has given it offsets up to `last`. A channel held already keeps what it
    // holds (the units say as much); one not held is remembered with an empty history (its
    // next offset), so a client that has it all is not told of a gap. `channel` "": `last` is
    // the floor (a channel the log does not number starts above it).
    void known(std::string_view channel, std::uint64_t last);
    // The offset `channel`'s next message gets. A channel never seen gets 1; once idle channels
    // have been forgotten, a new one starts above every offset given so far (a forgotten
    // channel never reuses an offset within an epoch).
    std::uint64_t next(std::string_view channel) const;
    bool contains(std::string_view channel) const { return find(channel) != nullptr; }
    // The oldest offset held for `channel` (== next() when none).
    std::uint64_t oldest(std::string_view channel) const;
    // Whether `channel` may have been forgotten with offsets up to `last` (see next()).
    bool maybe_forgotten(std::uint64_t last) const noexcept { return last < floor_ + 1 && floor_ > 0; }
    // As resume_log::read, for one channel (0 when nothing is held from `from` on).
    std::size_t read(std::string_view channel, std::uint64_t from, std::size_t max_bytes,
                     std::string& out, std::uint64_t& first) const;

    // The process-wide sequence of the newest message appended (0: none yet). A unit's
    // messages have consecutive sequence numbers.
    std::uint64_t sequence() const noexcept { return total_; }
    // Where a replay of `channel` "after sequence `after`" starts: `from`, the offset of its
    // first message held with a sequence above `after` (next() when none), and `lost`, how many
    // of its messages with a sequence above `after` left the history (exact when the channel's
    // first message of the epoch came after `after`, else counting every message it dropped:
    // `lost_at_most`).
    struct since_result {
        std::uint64_t from = 0;
        std::uint64_t lost = 0;
        bool lost_at_most = false;
    };
    since_result since(std::string_view channel, std::uint64_t after) const;
    // Calls `f` for every known channel with a message whose sequence is above `after`.
    void channels_after(std::uint64_t after,
                        const std::function<void(std::string_view)>& f) const;
    // The newest sequence of a channel that was forgotten (0: none): a client whose position
    // is older may have missed messages of a channel no longer known.
    std::uint64_t forgotten_sequence() const noexcept { return forgotten_seq_; }

    std::size_t messages() const noexcept { return messages_; }
    std::size_t bytes() const noexcept { return bytes_; }
    std::size_t channels() const noexcept { return records_.size(); }

private:
    // A unit held: its first offset, first sequence and messages (parallel to the log's).
    struct unit_seq {
        std::uint64_t offset;
        std::uint64_t seq;
        std::uint64_t count;
    };
    struct record {
        resume_log log;
        std::uint64_t serial = 0;  // units ever appended to `log`
        std::deque<unit_seq> seqs;
        std::uint64_t first_offset = 0;  // the channel's first message of the epoch ...
        std::uint64_t first_seq = 0;     // ... and its sequence
        std::uint64_t last_seq = 0;      // the sequence of its newest message
        std::uint64_t dropped_seq = 0;   // the sequence of the newest message it dropped
    };
    static void drop_seqs(record& r, std::size_t units);
    struct held {
        record* r;
        std::uint64_t serial;  // which of r's units; stale once r's log dropped it itself
    };
    const record* find(std::string_view channel) const;
    record& record_of(std::string_view channel, std::uint64_t first_offset);
    void keep(record& r, const relay_unit& unit);
    void clear(record& r);
    bool stale(const held& h) const noexcept {
        return h.serial + h.r->log.units() < h.r->serial;
    }
    void bound();
    void forget_idle();

    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    channel_history_limits limits_;
    codec_options codec_;
    memory_budget* budget_;
    std::unordered_map<std::string, std::unique_ptr<record>, string_hash, std::equal_to<>> records_;
    std::deque<held> order_;  // every unit held, oldest first (and some stale entries)
    std::size_t units_ = 0;   // units held by all logs
    std::size_t messages_ = 0;
    std::size_t bytes_ = 0;
    std::uint64_t total_ = 0;  // messages ever appended (this epoch)
    std::uint64_t floor_ = 0;  // every offset of a forgotten channel is at most this
    std::uint64_t forgotten_seq_ = 0;
    std::size_t scan_at_;      // forget_idle() when this many channels are known
};

}  // namespace framecast::io
