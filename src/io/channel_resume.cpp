// The channel room's part in resume (`serve --channels --resume`, docs/resume.md#channels):
// per-channel offsets and histories, the RESUME command, the replay of a channel's history as
// the client's queue drains, and position pairs ($sys.pos "CHANNEL FIRST COUNT", plus the
// process-wide sequence after "RESUME *") in front of what a client with positions receives.
// A client that never sends RESUME sees nothing new.
#include "channel_room.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "framecast/io/protocol_words.hpp"
#include "resume_room.hpp"

namespace framecast::io {

namespace {

// Queued at most while replaying (as resume_room): the server's memory does not grow with a
// backlog.
std::size_t replay_queue(const server_options& o) noexcept {
    return std::max<std::size_t>(std::min<std::size_t>(256 * 1024, o.client_buffer / 4), 1);
}

}  // namespace

void channel_room::start_history() {
    const auto& r = opts_.resume;
    epoch_ = r.epoch.empty() ? random_epoch() : r.epoch;
    history_ = std::make_unique<channel_history>(
        channel_history_limits{.window = r.history_messages,
                               .total_messages = r.channel_total_messages,
                               .total_bytes = r.history_bytes,
                               .idle_channels = r.idle_channels},
        opts_.codec, &hub_.budget());
    spdlog::info("resume: epoch {}, per channel a window of {} messages; all channels at most {} "
                 "messages / {} bytes",
                 epoch_, r.history_messages, r.channel_total_messages, r.history_bytes);
}

relay_unit channel_room::positioned(std::string_view channel, std::uint64_t first,
                                     std::size_t count, std::string_view body,
                                     std::uint64_t origin, bool sequenced) const {
    auto bytes = std::make_shared<std::string>();
    bytes->reserve(body.size() + 2 * opts_.codec.header_size + channel.size() + 72);
    append_frame(*bytes, notice_position, opts_.codec);
    // The sequence is the newest the server holds as this is queued: every message of a
    // channel the client matches up to it is in this pair, was queued before it, or belongs
    // to a channel being replayed (whose $sys.resumed answer was queued before).
    append_frame(*bytes,
                 sequenced ? fmt::format("{} {} {} {}", channel, first, count, history_->sequence())
                           : fmt::format("{} {} {}", channel, first, count),
                 opts_.codec);
    bytes->append(body);
    // Its publisher stays its origin: backpressure holds the one whose traffic fills a queue.
    return hub_.budget().track({shared_frame(std::move(bytes)), count, origin});
}

// "RESUME": positions on, answered `$sys.ok` "RESUME EPOCH". "RESUME CHANNEL EPOCH LAST": also
// replays CHANNEL after LAST, answered `$sys.resumed` "CHANNEL EPOCH NEXT STATUS".
void channel_room::resume(member& m, channel_seat& seat, std::string_view arg) {
    if (!history_) {
        fail(m, channel_error::bad_command,
             "RESUME: this server keeps no history (it runs without --resume)");
        return;
    }
    if (shared_ && loading_) {
        // The log's epoch and history are not here yet: answered once they are, in order.
        seat.held = true;
        seat.held_text = std::string(arg);
        held_.emplace_back(&m, &seat);
        spdlog::info("client {}: RESUME waits for the shared log's {}", m.peer(),
                      epoch_.empty() ? "epoch" : "recent entries");
        return;
    }
    std::string_view w[4];
    std::size_t n = 0;
    for (std::string_view rest = arg; !rest.empty() && n < 4; ++n) {
        const auto sp = rest.find(' ');
        w[n] = rest.substr(0, sp);
        rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
    }
    std::uint64_t last = 0;
    if (n > 0 && w[0] == "*" && (n == 1 || (n == 3 && is_protocol_token(w[1]) &&
                                            parse_protocol_u64(w[2], last)))) {
        resume_all(m, seat, w[1], n == 3 ? &last : nullptr);
        return;
    }
    if ((n != 0 && n != 3) || (n == 3 && (!is_protocol_token(w[1]) ||
                                          !parse_protocol_u64(w[2], last)))) {
        fail(m, channel_error::bad_position,
             "expected 'RESUME', 'RESUME CHANNEL EPOCH LAST', 'RESUME *' or 'RESUME * EPOCH "
             "SEQ' (EPOCH: 1-64 of [A-Za-z0-9_-]; LAST, SEQ: decimal, 0 for none)");
        return;
    }
    if (!seat.positioned) {
        seat.positioned = true;
        positioned_.emplace(&m, &seat);
    }
    if (n == 0) {
        notify(m, notice_ok, "RESUME " + epoch_);
        return;
    }
    const std::string_view channel = w[0];
    if (!may_subscribe(m, "RESUME", channel, false)) return;
    if (seat.replaying.contains(channel)) {
        fail(m, channel_error::bad_position,
             "RESUME " + std::string(channel) + ": this channel is being resumed already");
        return;
    }
    if (last == UINT64_MAX) {
        fail(m, channel_error::bad_position,
             fmt::format("RESUME {}: offset {} has no next", channel, last));
        return;
    }
    const bool held_here = history_->contains(channel);
    const std::uint64_t next = history_->next(channel);
    const std::uint64_t oldest = history_->oldest(channel);
    std::uint64_t start = last + 1;
    std::string status = "ok";
    // With a shared log, a channel this node does not hold (never seen here, or forgotten: the
    // log may number it still) or holds only up to before the client's position (the client
    // came from a node further on) claims no next offset here: the client waits for the log
    // from LAST+1, and the position pair of what comes shows any hole. Bounded as its
    // subscriptions are: a forged position costs one entry until it disconnects.
    const bool waits = shared_ && w[1] == epoch_ && (!held_here || last >= next);
    if (waits && seat.replaying.size() >= opts_.channels.limits.max_subscriptions) {
        fail(m, channel_error::bad_position,
             fmt::format("RESUME {}: more than {} channels waiting to be resumed", channel,
                         opts_.channels.limits.max_subscriptions));
        return;
    }
    if (w[1] != epoch_) {
        // That history is gone (a restart): all that is held of the channel follows.
        start = shared_ && !held_here ? 1 : oldest;
        status = "epoch";
        ++counters_.resume_gaps;
    } else if (waits) {
        // Answered "ok": what comes next says whether anything was lost.
    } else if (last >= next) {
        fail(m, channel_error::bad_position,
             fmt::format("RESUME {}: offset {} is ahead of the channel (the newest is {})",
                         channel, last, next - 1));
        return;
    } else if (start < oldest && shared_ && fetch_) {
        // Older than this node's window: the log's past first (channel_fetch.cpp). Answered
        // "ok": the position pairs show what the log no longer has.
        seat.from_log.emplace(std::string(channel), start);
    } else if (start < oldest) {
        start = oldest;
        status = fmt::format("gap {}", oldest - (last + 1));
        ++counters_.resume_gaps;
    }
    ++counters_.resume_requests;
    spdlog::debug("client {} resumes {} at {} ({}), the newest is {}", m.peer(),
                  escape_controls(channel, true), start, status, next - 1);
    // Known to the history only: a client naming channels that do not exist costs nothing.
    if (held_here) seat.known.emplace(channel);
    seat.replaying.emplace(std::string(channel), start);
    notify(m, notice_resumed, fmt::format("{} {} {} {}", channel, epoch_, start, status));
}

// "RESUME *": positions with sequences, answered `$sys.resumed` "* EPOCH NEXT STATUS"; every
// SUB from now on replays the matching channels the client has no position in from NEXT.
void channel_room::resume_all(member& m, channel_seat& seat, std::string_view epoch,
                              const std::uint64_t* last) {
    if (seat.sequenced) {
        fail(m, channel_error::bad_position, "RESUME *: sent already on this connection");
        return;
    }
    const std::uint64_t now = history_->sequence();
    std::uint64_t after = last ? *last : now;
    std::string status = "ok";
    if (last && epoch != epoch_) {
        // That history is gone: every matching channel is replayed from what is held.
        after = 0;
        status = "epoch";
        seat.after_epoch = true;
        ++counters_.resume_gaps;
    } else if (last && *last > now && shared_) {
        // Ahead of this node (see resume()): channels it matches are caught up from there.
    } else if (last && *last > now) {
        fail(m, channel_error::bad_position,
             fmt::format("RESUME *: sequence {} is ahead of the server (the newest is {})", *last,
                         now));
        return;
    } else if (last && history_->forgotten_sequence() > *last) {
        // Channels forgotten since (idle, past the channels bound) may have matched.
        status = fmt::format("gap {}", history_->forgotten_sequence() - *last);
        ++counters_.resume_gaps;
    }
    if (!seat.positioned) {
        seat.positioned = true;
        positioned_.emplace(&m, &seat);
    }
    seat.sequenced = true;
    seat.after = after;
    ++counters_.resume_requests;
    notify(m, notice_resumed, fmt::format("* {} {} {}", epoch_, after + 1, status));
}

void channel_room::catch_up(member& m, channel_seat& seat, std::string_view pattern) {
    std::vector<std::string> channels;
    history_->channels_after(seat.after, [&](std::string_view c) {
        if (!pattern_matches(pattern, c) || seat.known.contains(c) || seat.replaying.contains(c)) {
            return;
        }
        // Matched by an earlier SUB: delivered live (or caught up) since then.
        for (const auto& p : seat.patterns) {
            if (pattern_matches(p, c)) return;
        }
        channels.emplace_back(c);
    });
    std::sort(channels.begin(), channels.end());  // a stable order for the client
    const auto* g = m.grants();
    for (auto& c : channels) {
        if (g && g->filters_deliveries() && !g->may_receive(c)) continue;
        const auto s = history_->since(c, seat.after);
        std::string status = "ok";
        if (seat.after_epoch) {
            status = "epoch";
        } else if (s.lost > 0) {
            status = fmt::format("gap {}", s.lost);
            ++counters_.resume_gaps;
        }
        notify(m, notice_resumed, fmt::format("{} {} {} {}", c, epoch_, s.from, status));
        seat.replaying.emplace(c, s.from);
        seat.known.emplace(std::move(c));
    }
}

void channel_room::pump(member& m, channel_seat& seat) {
    const std::size_t piece_bytes = std::max<std::size_t>(relay_unit_bytes(opts_), 16 * 1024);
    auto it = seat.replaying.begin();
    while (it != seat.replaying.end() && !m.closed() && !m.told_expiry &&
           m.queued_bytes() < replay_queue(opts_)) {
        if (const auto lf = seat.from_log.find(it->first); lf != seat.from_log.end()) {
            // From the log: its pieces come back through fetched(), which pumps again.
            if (!seat.fetching && !seat.queued) fetch(m, seat, it->first, lf->second);
            ++it;
            continue;
        }
        std::string body;
        std::uint64_t first = 0;
        const std::size_t count = history_->read(it->first, it->second, piece_bytes, body, first);
        if (count == 0) {
            if (waits_for_log(it->first, it->second)) {
                // Ahead of this node (a shared log, resume()): it waits for the log.
                wait_for_log(m, seat, it->first);
                ++it;
                continue;
            }
            // Caught up: the channel's next broadcast reaches it live, nothing in between.
            it = seat.replaying.erase(it);
            continue;
        }
        if (first > it->second) {
            // The history moved past it while it replayed: the position pair shows the hole.
            ++counters_.resume_gaps;
        }
        it->second = first + count;
        counters_.resume_replayed += count;
        m.deliver(positioned(it->first, first, count, body, 0, seat.sequenced));
        if (m.closed()) return;  // a slow consumer: its seat was emptied (leave())
    }
}

std::uint64_t channel_room::max_lag() const {
    std::uint64_t lag = 0;
    if (!history_) return lag;
    for (const auto& [m, seat] : positioned_) {
        for (const auto& [channel, cursor] : seat->replaying) {
            if (!history_->contains(channel)) continue;
            const auto next = history_->next(channel);
            if (cursor < next) lag = std::max(lag, next - cursor);
        }
    }
    return lag;
}

}  // namespace framecast::io

namespace framecast::io {

// ---------------------------------------------------------------------------------------------
// With a shared log (serve --channels --resume --backplane)

void channel_room::use_shared_log(server::history_fetch_fn fetch) {
    if (!history_) return;
    fetch_ = std::move(fetch);
    shared_ = true;
    loading_ = true;  // until the log's epoch (and its recent entries) are here
    epoch_.clear();
}

void channel_room::set_epoch(const std::string& epoch, std::uint64_t next, bool history_follows) {
    if (!history_ || !shared_) return;
    if (epoch != epoch_) {
        if (epoch_.empty()) {
            spdlog::info("resume: epoch {} from the shared log, its history from offset {}",
                         epoch, next);
        } else {
            spdlog::warn("resume: the shared log's history was lost (epoch {} is now {}); next "
                         "offset {}", epoch_, epoch, next);
        }
        epoch_ = epoch;
        history_->restart(next);
        // Their positions belong to the old epoch: they resume again and are told ("epoch").
        // Collected first: closing one leaves this room.
        std::vector<member*> all;
        for (auto& [m, seat] : positioned_) all.push_back(const_cast<member*>(m));
        for (member* m : all) {
            m->close(close_reason::server_stopping,
                     "the stream's history changed (a new epoch): resume again");
        }
    }
    loading_ = history_follows;
    if (!loading_) release_held();
}

bool channel_room::known(std::string_view channel, std::uint64_t last) {
    if (!history_ || !shared_) return true;
    std::string detail;
    if (!channel.empty() &&
        check_name(channel, false, opts_.channels.limits, detail) != channel_error::none) {
        spdlog::warn("resume: the shared log numbers a channel '{}' that is not one: {}; ignored",
                     escape_controls(channel, true), detail);
        return false;
    }
    history_->known(channel, last);
    return true;
}

// The RESUMEs that waited for the log are answered now, in the order they came, and their
// clients read on.
void channel_room::release_held() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& [m, seat] : held) {
        seat->held = false;
        const std::string text = std::move(seat->held_text);
        seat->held_text.clear();
        if (m->closed()) continue;
        resume(*m, *seat, text);
        auto keep = m->shared_from_this();  // release_hold may close it
        m->release_hold();
    }
}

bool channel_room::waits_for_log(std::string_view channel, std::uint64_t cursor) const {
    return shared_ && (!history_->contains(channel) || cursor > history_->next(channel));
}

void channel_room::wait_for_log(member& m, channel_seat& seat, std::string_view channel) {
    const auto [b, e] = waiting_.equal_range(std::string(channel));
    for (auto it = b; it != e; ++it) {
        if (it->second.first == &m) return;
    }
    waiting_.emplace(std::string(channel), std::pair<member*, channel_seat*>(&m, &seat));
}

// Clients waiting for `channel` from the log: what they wait for may be here now.
void channel_room::pump_waiting(std::string_view channel) {
    const auto [b, e] = waiting_.equal_range(std::string(channel));
    if (b == e) return;
    std::vector<std::pair<member*, channel_seat*>> waiting;
    for (auto it = b; it != e; ++it) waiting.push_back(it->second);
    waiting_.erase(b, e);
    for (auto& [m, seat] : waiting) {
        if (m->closed()) continue;
        auto keep = m->shared_from_this();
        pump(*m, *seat);  // puts it back while it still waits
    }
}

void channel_room::forget_waiting(const member& m, const channel_seat& seat) {
    for (const auto& [channel, cursor] : seat.replaying) {
        const auto [b, e] = waiting_.equal_range(channel);
        for (auto it = b; it != e;) {
            it = it->second.first == &m ? waiting_.erase(it) : std::next(it);
        }
    }
}

}  // namespace framecast::io
