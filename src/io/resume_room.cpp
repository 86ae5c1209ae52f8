#include "resume_room.hpp"

#include "framecast/io/protocol_words.hpp"

#include <algorithm>
#include <charconv>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "close_reason.hpp"
#include "names.hpp"

namespace framecast::io {

std::string random_epoch() {
    std::random_device rd;
    const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    return fmt::format("{:016x}", v);
}

namespace {

constexpr std::string_view resume_verb = "@resume ";

std::vector<std::string_view> words(std::string_view s) {
    std::vector<std::string_view> out;
    while (!s.empty() && out.size() < 8) {
        const auto sp = s.find(' ');
        out.push_back(s.substr(0, sp));
        if (sp == std::string_view::npos) break;
        s.remove_prefix(sp + 1);
    }
    return out;
}

}  // namespace

resume_room::resume_room(const server_options& opts, server_counters& counters, hub& h)
    : opts_(opts), counters_(counters), hub_(h),
      epoch_(opts.resume.epoch.empty() ? random_epoch() : opts.resume.epoch),
      log_({opts.resume.history_messages, opts.resume.history_bytes}, opts.codec, &h.budget()),
      reads_(opts.resume.log_replays) {
    spdlog::info("resume: epoch {}, window {} messages / {} bytes", epoch_,
                 opts.resume.history_messages, opts.resume.history_bytes);
}

bool resume_room::is_request(std::string_view payload) noexcept {
    return payload.starts_with(resume_verb);
}

void resume_room::refuse(member& m, std::string_view why) {
    ++counters_.resume_refused;
    spdlog::warn("client {}: resume request refused: {}", m.peer(), why);
    m.deliver(make_unit("@resume-error " + std::string(why), opts_.codec));
    m.stop_receiving();
    m.drain();
}

void resume_room::request(member& m, resume_seat& seat, std::string_view payload) {
    if (members_.contains(&m) || !seat.held.empty()) {
        return refuse(m, "a second resume request");
    }
    const auto w = words(payload.substr(resume_verb.size()));
    if ((w.size() != 1 && w.size() != 3) || !is_protocol_token(w[0])) {
        return refuse(m, "expected '@resume NONCE' or '@resume NONCE EPOCH LAST' (NONCE, EPOCH: "
                         "1-64 of [A-Za-z0-9_-]; LAST: a decimal offset)");
    }
    std::uint64_t last = 0;
    if (w.size() == 3 && (!is_protocol_token(w[1]) || !parse_protocol_u64(w[2], last))) {
        return refuse(m, "bad EPOCH or LAST in '" + escape_controls(payload, true) + "'");
    }
    if (fetch_ && (!shared_epoch_ || loading_)) {
        // A shared log this node has not reached yet (Redis is down since it started): its
        // own epoch and offsets mean nothing to the client, so the answer waits (set_epoch).
        // So does one that comes while the log's recent entries are on their way.
        spdlog::info("client {}: resume request waits for the shared log's {}", m.peer(),
                     shared_epoch_ ? "recent entries" : "epoch");
        m.stop_receiving();
        seat = {};
        seat.held = std::string(payload);
        held_.emplace_back(&m, &seat);
        return;
    }
    std::string status;
    std::uint64_t start = log_.next();
    if (w.size() == 1) {
        status = "new";
    } else if (w[1] != epoch_) {
        // The history that position belongs to is gone (a restart): all that is held follows.
        start = log_.oldest();
        status = "epoch";
        ++counters_.resume_gaps;
    } else if (last >= log_.next() && shared_epoch_ && last < UINT64_MAX) {
        // Another node of the shared log gave it offsets this one has not read yet: the
        // stream continues from LAST+1 as soon as they arrive (see pump()).
        start = last + 1;
        status = "ok";
    } else if (last >= log_.next()) {
        return refuse(m, fmt::format("offset {} is ahead of the stream (the newest is {})", last,
                                     log_.next() - 1));
    } else if (last + 1 < log_.oldest() && fetch_ && shared_epoch_) {
        // Older than this node's history, but the shared log may still have it: the answer
        // waits for its first piece (resume_room_fetch.cpp), which says.
        ++counters_.resume_requests;
        m.stop_receiving();
        seat = {};
        seat.replaying = seat.answer_pending = true;
        seat.cursor = seat.asked = last + 1;
        seat.nonce = std::string(w[0]);
        members_.emplace(&m, &seat);
        return pump(m, seat);
    } else if (last + 1 < log_.oldest()) {
        start = log_.oldest();
        status = fmt::format("gap {}", start - (last + 1));
        ++counters_.resume_gaps;
    } else {
        start = last + 1;
        status = "ok";
    }
    ++counters_.resume_requests;
    spdlog::info("client {} resumes at {} ({}), the newest is {}", m.peer(), start, status,
                 log_.next() - 1);
    // From now on it receives only through this room, each piece with its position.
    m.stop_receiving();
    seat = {};
    seat.replaying = true;
    seat.cursor = start;
    members_.emplace(&m, &seat);
    m.deliver(make_unit(fmt::format("@resumed {} {} {} {}", w[0], epoch_, start, status),
                        opts_.codec));
}

// The deferred answer of a request older than the history (resume_room_fetch.cpp): `start` is
// the first offset the log or the history still had from `asked` on.
void resume_room::answer(member& m, const std::string& nonce, std::uint64_t asked,
                         std::uint64_t start) {
    std::string status = "ok";
    if (start > asked) {
        status = fmt::format("gap {}", start - asked);
        ++counters_.resume_gaps;
    }
    spdlog::info("client {} resumes at {} ({}, from the shared log), the newest is {}", m.peer(),
                 start, status, log_.next() - 1);
    m.deliver(make_unit(fmt::format("@resumed {} {} {} {}", nonce, epoch_, start, status),
                        opts_.codec));
}

std::size_t resume_room::replay_queue() const noexcept {
    return std::max<std::size_t>(std::min<std::size_t>(256 * 1024, opts_.client_buffer / 4), 1);
}

void resume_room::pump(member& m, resume_seat& seat) {
    const std::size_t piece_bytes = std::max<std::size_t>(relay_unit_bytes(opts_), 16 * 1024);
    while (seat.replaying && !m.closed() && !m.told_expiry && m.queued_bytes() < replay_queue()) {
        if (seat.fetching || seat.queued) return;  // fetched() pumps again
        if (needs_log(seat)) return fetch(m, seat);
        std::string body;
        std::uint64_t first = 0;
        const std::size_t count = log_.read(seat.cursor, piece_bytes, body, first);
        if (count == 0 && seat.cursor > log_.next()) {
            // Ahead of this node (a position from another node): broadcast() pumps again.
            seat.waiting = true;
            return;
        }
        if (count == 0) {
            // Caught up: the next broadcast reaches it live, nothing can fall in between.
            seat.replaying = false;
            seat.live = true;
            return;
        }
        if (first > seat.cursor) {
            // The history moved past it while it replayed (a slow replay of a full window).
            ++counters_.resume_gaps;
            spdlog::warn("client {}: {} messages left the history before they were replayed",
                         m.peer(), first - seat.cursor);
        }
        send_piece(m, seat, first, count, body);
    }
}

// A replayed piece, after its position frame ("FIRST COUNT"); the client's cursor moves past it.
void resume_room::send_piece(member& m, resume_seat& seat, std::uint64_t first, std::size_t count,
                             std::string_view body) {
    auto bytes = std::make_shared<std::string>();
    bytes->reserve(body.size() + opts_.codec.header_size + 24);
    append_frame(*bytes, fmt::format("{} {}", first, count), opts_.codec);
    bytes->append(body);
    seat.cursor = first + count;
    counters_.resume_replayed += count;
    m.deliver(hub_.budget().track({shared_frame(std::move(bytes)), count}));
}

void resume_room::history(const relay_unit& unit, std::uint64_t offset) {
    if (unit) log_.append_at(offset, unit);
}

void resume_room::set_epoch(const std::string& epoch, std::uint64_t next, bool history_follows) {
    const bool first = !shared_epoch_;
    shared_epoch_ = true;
    if (epoch != epoch_) change_epoch(epoch, next, first);
    loading_ = history_follows;
    if (loading_) return;  // the requests are answered once the history is here
    // The requests that waited for the log are answered now, in the order they came.
    auto held = std::move(held_);
    held_.clear();
    for (auto& [m, seat] : held) {
        const std::string text = std::move(seat->held);
        seat->held.clear();
        request(*m, *seat, text);
    }
}

void resume_room::change_epoch(const std::string& epoch, std::uint64_t next, bool first) {
    if (first) {
        spdlog::info("resume: epoch {} from the shared log, next offset {}", epoch, next);
    } else {
        spdlog::warn("resume: the shared log's history was lost (epoch {} is now {}); next "
                     "offset {}", epoch_, epoch, next);
    }
    epoch_ = epoch;
    log_.reset(next);
    // Their positions belong to the old epoch: they resume again and are told ("epoch").
    // Collected first: closing one leaves this room.
    std::vector<member*> all;
    for (auto& [m, seat] : members_) all.push_back(m);
    for (member* m : all) {
        m->close(close_reason::server_stopping,
                 "the stream's history changed (a new epoch): resume again");
    }
}

void resume_room::broadcast(const relay_unit& unit, std::uint64_t offset) {
    if (!unit) return;
    std::uint64_t first = log_.next();
    if (offset == 0) {
        log_.append(unit);
    } else if (log_.append_at(offset, unit)) {
        first = offset;
    } else {
        return;  // a repeat of what the history holds
    }
    if (members_.empty()) return;
    std::vector<member*> live;
    std::vector<std::pair<member*, resume_seat*>> waiting;
    for (auto& [m, seat] : members_) {
        if (seat->waiting) waiting.emplace_back(m, seat);
        // An expired client's notice is the last thing it receives (as with the hub).
        if (seat->live && !m->closed() && !m->told_expiry) live.push_back(m);
    }
    if (!live.empty()) deliver_live(live, unit, first);
    // Clients whose position was ahead of this node: what they wait for may be here now.
    for (auto [m, seat] : waiting) {
        seat->waiting = false;
        if (!m->closed()) pump(*m, *seat);
    }
}

void resume_room::deliver_live(const std::vector<member*>& live, const relay_unit& unit,
                               std::uint64_t first) {
    // One copy with the position in front, shared by every live resuming client.
    auto bytes = std::make_shared<std::string>();
    bytes->reserve(unit.size() + opts_.codec.header_size + 24);
    append_frame(*bytes, fmt::format("{} {}", first, unit.messages), opts_.codec);
    bytes->append(*unit.bytes);
    // Its publisher stays its origin: backpressure holds the one whose traffic fills a queue.
    const relay_unit positioned =
        hub_.budget().track({shared_frame(std::move(bytes)), unit.messages, unit.origin});
    // Collected first: a delivery may close a slow client, which leaves this room.
    for (member* m : live) {
        m->deliver(positioned);
        counters_.deliveries += unit.messages;
    }
}

void resume_room::leave(member& m, resume_seat& seat) {
    if (!seat.held.empty()) std::erase(held_, std::pair<member*, resume_seat*>(&m, &seat));
    forget_fetch(m, seat);
    members_.erase(&m);
    seat = {};
}

std::uint64_t resume_room::max_lag() const noexcept {
    std::uint64_t lag = 0;
    for (const auto& [m, seat] : members_) {
        if (seat->replaying && seat->cursor < log_.next()) {
            lag = std::max(lag, log_.next() - seat->cursor);
        }
    }
    return lag;
}

}  // namespace framecast::io
