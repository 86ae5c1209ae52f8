// Resume with a shared log (serve --resume --backplane, docs/resume.md "Several nodes"): a
// client whose position is older than this node's in-memory history replays the missing part
// from the log itself (the Redis stream), piece by piece as its queue drains, then continues
// from the history and then live, as any resuming client. The reads run on the backplane's
// own thread; their pieces come back here, on the io thread, so the seams (log → history →
// live) are crossed between two steps of one thread: nothing falls between them or comes twice.
#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "resume_room.hpp"

namespace framecast::io {

bool resume_room::needs_log(const resume_seat& seat) const noexcept {
    return fetch_ && shared_epoch_ && seat.cursor < log_.oldest();
}

void resume_room::fetch(member& m, resume_seat& seat) {
    if (!reads_.start(&m, seat.ticket)) {
        seat.queued = true;
        return;
    }
    seat.fetching = true;
    fetch_(epoch_, seat.cursor,
           [this, ticket = seat.ticket](server::history_piece piece) { fetched(ticket, std::move(piece)); });
}

void resume_room::fetched(std::uint64_t ticket, server::history_piece piece) {
    member* done = nullptr;
    if (member* m = reads_.finish(ticket)) {
        if (auto s = members_.find(m); s != members_.end()) {
            s->second->fetching = false;
            take(*m, *s->second, piece);
            done = m;
        }
    }
    // A read is free: the clients waiting for one go first (arrival order, if still here and
    // still in need), then this one.
    auto keep = done ? done->shared_from_this() : nullptr;
    while (member* m = reads_.next_waiting()) {
        if (auto s = members_.find(m); s != members_.end()) {
            s->second->queued = false;
            if (!m->closed()) pump(*m, *s->second);
        }
    }
    if (done && !done->closed()) {
        if (auto s = members_.find(done); s != members_.end()) pump(*done, *s->second);
    }
}

// Queues the piece's messages from the client's cursor on (contiguous: a hole ends the piece,
// and the next read starts at it). Nothing from the cursor on (the log trimmed it, or could
// not say): the client continues from the oldest message this node holds, and is told of the
// gap (in the answer, or by the next position frame).
void resume_room::take(member& m, resume_seat& seat, const server::history_piece& piece) {
    std::string body;
    std::uint64_t first = 0;
    std::size_t count = 0;
    std::uint64_t next = seat.cursor;
    for (const auto& [offset, unit] : piece.units) {
        if (!unit || offset + unit.messages <= next) continue;
        if (count > 0 && offset != next) break;
        const std::uint64_t skip = offset < next ? next - offset : 0;
        if (count == 0) first = offset + skip;
        const std::size_t at = message_position(unit, static_cast<std::size_t>(skip), opts_.codec);
        body.append(unit.bytes->data() + at, unit.size() - at);
        count += unit.messages - static_cast<std::size_t>(skip);
        next = offset + unit.messages;
    }
    const std::uint64_t start = count > 0 ? first : std::max(seat.cursor, log_.oldest());
    if (seat.answer_pending) {
        seat.answer_pending = false;
        answer(m, seat.nonce, seat.asked, start);
    } else if (start > seat.cursor) {
        ++counters_.resume_gaps;
        spdlog::warn("client {}: {} messages left the shared log before they were replayed",
                     m.peer(), start - seat.cursor);
    }
    seat.cursor = start;
    if (count == 0) return;
    counters_.resume_log_replayed += count;
    send_piece(m, seat, first, count, body);
}

void resume_room::forget_fetch(member& m, resume_seat& seat) {
    reads_.forget(&m, seat.fetching, seat.ticket, seat.queued);
}

}  // namespace framecast::io
