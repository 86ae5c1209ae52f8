// Channels with resume and a shared log (serve --channels --resume --backplane, docs/resume.md
// "Several nodes and channels"): a client whose position in a channel is older than this
// node's window replays the missing part from the log itself (the Redis stream), piece by
// piece as its queue drains, then continues from the window and then live. The stream holds
// every channel in one order, so a read covers the log from an offset on and keeps this
// channel's entries: it starts at the client's channel offset + 1 (a channel's offsets never
// pass the log's, so its next entry is no earlier) and ends where the window begins. The
// reads run on the backplane's own thread, at most --resume-log-replays at once; their pieces
// come back on the io thread, so the seams (log -> window -> live) are crossed between two
// steps of one thread.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "channel_room.hpp"
#include "resume_log.hpp"

namespace framecast::io {

void channel_room::fetch(member& m, channel_seat& seat, const std::string& channel,
                         std::uint64_t from) {
    if (!reads_.start(&m, seat.ticket)) {
        seat.queued = true;
        return;
    }
    seat.fetching = true;
    seat.fetch_channel = channel;
    fetch_(epoch_, from, [this, ticket = seat.ticket](server::history_piece piece) {
        fetched(ticket, std::move(piece));
    });
}

void channel_room::fetched(std::uint64_t ticket, server::history_piece piece) {
    std::shared_ptr<member> done;
    if (member* m = reads_.finish(ticket)) {
        if (auto s = positioned_.find(m); s != positioned_.end()) {
            s->second->fetching = false;
            done = m->shared_from_this();
            take_from_log(*m, *s->second, piece);
        }
    }
    // A read is free: the clients waiting for one go first (arrival order), then this one.
    while (member* m = reads_.next_waiting()) {
        if (auto s = positioned_.find(m); s != positioned_.end()) {
            s->second->queued = false;
            if (!m->closed()) pump(*m, *s->second);
        }
    }
    if (done && !done->closed()) {
        if (auto s = positioned_.find(done.get()); s != positioned_.end()) pump(*done, *s->second);
    }
}

// Queues the piece's units of the channel from the client's cursor on, each with its
// position pair (a hole shows there: the log trimmed it, or an entry was refused). Done with
// the log once a unit reaches what this node's window holds, or the log has nothing more (or
// could not say): the window takes over from the cursor.
void channel_room::take_from_log(member& m, channel_seat& seat,
                                 const server::history_piece& piece) {
    const auto rp = seat.replaying.find(seat.fetch_channel);
    const auto lf = seat.from_log.find(seat.fetch_channel);
    if (rp == seat.replaying.end() || lf == seat.from_log.end()) return;
    const std::string_view channel = rp->first;
    std::uint64_t& cursor = rp->second;
    const std::uint64_t window = history_->oldest(channel);
    bool done = piece.failed;
    // Where the next read starts: past every entry read, refused ones included.
    std::uint64_t read_to = std::max(lf->second, piece.read_to);
    for (std::size_t i = 0; i < piece.units.size() && !done; ++i) {
        const auto& [offset, unit] = piece.units[i];
        read_to = std::max(read_to, offset + unit.messages);
        const std::uint64_t k = i < piece.channel_offsets.size() ? piece.channel_offsets[i] : 0;
        decoder dec(opts_.codec, decode_mode::whole);
        if (!unit || k == 0 || channel_of(unit, dec) != channel) continue;
        if (k >= window) {
            done = true;  // the window has it from here
            break;
        }
        if (k + unit.messages <= cursor) continue;  // the client has it
        const std::uint64_t skip = cursor > k ? cursor - k : 0;
        const std::uint64_t first = k + skip;
        if (first > cursor) ++counters_.resume_gaps;  // the pair shows the hole
        const std::size_t at = message_position(unit, static_cast<std::size_t>(skip), opts_.codec, 2);
        const std::size_t count = unit.messages - static_cast<std::size_t>(skip);
        cursor = k + unit.messages;
        counters_.resume_log_replayed += count;
        m.deliver(positioned(channel, first, count,
                             std::string_view(*unit.bytes).substr(at), 0, seat.sequenced));
        if (m.closed()) return;  // a slow consumer: its seat was emptied (leave())
    }
    if (piece.failed) {
        spdlog::warn("client {}: the shared log could not replay {}: continuing from this "
                     "node's window", m.peer(), escape_controls(channel, true));
    }
    // Done, too, when the read did not move on: the log has nothing past it (a read starts
    // with the entry holding `from`, so the end of the log returns its last entry again).
    if (done || cursor >= window || read_to <= lf->second) {
        seat.from_log.erase(lf);
    } else {
        lf->second = read_to;
    }
}

void channel_room::forget_fetch(member& m, channel_seat& seat) {
    reads_.forget(&m, seat.fetching, seat.ticket, seat.queued);
    seat.fetching = seat.queued = false;
}

}  // namespace framecast::io
