#include "channel_room.hpp"

#include <algorithm>
#include <span>

#include <spdlog/spdlog.h>

namespace framecast::io {

std::string_view channel_of(const relay_unit& unit, decoder& dec) {
    std::span<const char> in(unit.bytes->data(), unit.bytes->size());
    if (dec.next(in) != decode_event::frame) return {};
    return dec.payload();
}

channel_room::channel_room(const server_options& opts, server_counters& counters, hub& h)
    : opts_(opts), counters_(counters), hub_(h), reads_(opts.resume.log_replays) {
    if (opts_.auth.enabled()) auth_ = std::make_unique<jwt_verifier>(opts_.auth);
    if (opts_.resume.enabled) start_history();
}

channel_room::~channel_room() = default;

// AUTH token: a fresh token for the same subject replaces the client's expiry and permissions
// (new permissions apply to later commands; subscriptions held stay). Refused: the old token
// still holds, and expires as it would have.
void channel_room::refresh(member& m, std::string_view token) {
    if (!auth_) {
        fail(m, channel_error::bad_command,
             opts_.auth.cert ? "AUTH: this server takes identities from TLS client certificates "
                               "(--auth cert): reconnect with a renewed certificate"
                             : "AUTH: this server does not use --auth");
        return;
    }
    auth_result r;
    if (token.size() > max_token_bytes) {
        r.error = "token of " + std::to_string(token.size()) + " bytes, more than " +
                  std::to_string(max_token_bytes);
    } else {
        r = auth_->verify(token);
    }
    if (r.ok && r.who.subject != m.subject()) {
        r.ok = false;
        r.error = "the token's subject '" + escape_controls(r.who.subject, true) +
                  "' is not this client's '" + escape_controls(m.subject(), true) + "'";
    }
    if (!r.ok) {
        fail(m, channel_error::auth_refused, "AUTH: " + r.error);
        return;
    }
    m.set_identity(std::move(r.who.subject), r.who.expires, std::move(r.who.grants));
    notify(m, notice_ok, "AUTH");
}

// `PUB <channel>` for the seat's last accepted channel, written as the parser's canonical form.
bool channel_room::repeats_last_pub(const channel_seat& seat, std::string_view frame) const {
    if (!seat.channel_frame || seat.drop_payload) return false;
    const auto channel = seat_channel(seat);
    return frame.size() == 4 + channel.size() && frame.starts_with("PUB ") &&
           frame.substr(4) == channel;
}

bool channel_room::command(member& m, channel_seat& seat, std::string_view frame) {
    // A stream of publishes to one channel: checked at the first PUB, nothing to parse again.
    if (repeats_last_pub(seat, frame)) {
        seat.expect_payload = true;
        return true;
    }
    auto c = parse_command(frame);
    if (c.error != channel_error::none) {
        // A bad command frame is one frame: the stream is still in sync, the client stays.
        fail(m, c.error, c.detail);
        return !m.closed();
    }
    switch (c.what) {
        case verb::sub: subscribe(m, seat, c.arg, frame); break;
        case verb::unsub: unsubscribe(m, seat, c.arg, frame); break;
        case verb::pub: publish(m, seat, c.arg); break;
        case verb::ping: notify(m, notice_pong, c.arg); break;
        case verb::resume: resume(m, seat, c.arg); break;
        case verb::auth:
            refresh(m, c.arg);
            // New permissions: the next PUB is checked again, even to the same channel.
            seat.channel_frame.reset();
            break;
    }
    return !m.closed();
}

// SUB and RESUME: a valid name (a pattern for SUB) that the client's permissions let it
// subscribe to; else the client is told why and false.
bool channel_room::may_subscribe(member& m, std::string_view verb, std::string_view name,
                                 bool pattern) {
    std::string detail;
    if (auto e = check_name(name, pattern, opts_.channels.limits, detail);
        e != channel_error::none) {
        fail(m, e, pattern ? detail : std::string(verb) + ": " + detail);
        return false;
    }
    if (const auto* g = m.grants(); g && !g->may_subscribe(name)) {
        fail(m, channel_error::permission_denied,
             std::string(verb) + " " + std::string(name) + ": not allowed by the client's " +
                 grantor() + " (subscribe permissions)");
        return false;
    }
    return true;
}

void channel_room::subscribe(member& m, channel_seat& seat, std::string_view pattern,
                             std::string_view frame) {
    const auto& limits = opts_.channels.limits;
    if (!may_subscribe(m, "SUB", pattern, true)) return;
    // At the limit, a pattern already held is still acknowledged (the search runs only there).
    if (seat.patterns.size() >= limits.max_subscriptions &&
        std::find(seat.patterns.begin(), seat.patterns.end(), pattern) == seat.patterns.end()) {
        fail(m, channel_error::too_many_subscriptions,
             "this client already holds " + std::to_string(seat.patterns.size()) +
                 " subscriptions (max subscriptions); UNSUB one first");
        return;
    }
    const auto r = trie_.add(pattern, &m, limits.max_channels);
    if (r == subscription_trie::add_result::too_many_patterns) {
        fail(m, channel_error::too_many_channels,
             "the server already holds " + std::to_string(trie_.patterns()) +
                 " distinct patterns (max channels)");
        return;
    }
    if (r == subscription_trie::add_result::added) {
        if (seat.sequenced) catch_up(m, seat, pattern);
        seat.patterns.emplace_back(pattern);
        ++counters_.channel_subscribes;
    }
    // Subscribing twice to one pattern is harmless: acknowledged, still one subscription.
    notify(m, notice_ok, frame);
}

void channel_room::unsubscribe(member& m, channel_seat& seat, std::string_view pattern,
                               std::string_view frame) {
    // Checked first: the trie reads only well-formed patterns.
    std::string detail;
    if (auto e = check_name(pattern, true, opts_.channels.limits, detail);
        e != channel_error::none) {
        fail(m, e, detail);
        return;
    }
    if (!trie_.remove(pattern, &m)) {
        fail(m, channel_error::not_subscribed,
             "not subscribed to '" + escape_controls(pattern, true) + "'");
        return;
    }
    // From the back: the most recent subscriptions are the likeliest to go first.
    auto it = std::find(seat.patterns.rbegin(), seat.patterns.rend(), pattern);
    if (&*it != &seat.patterns.back()) *it = std::move(seat.patterns.back());
    seat.patterns.pop_back();
    // A later SUB replays only what was published since: the rest came through this pattern.
    if (seat.sequenced) {
        seat.after = history_->sequence();
        seat.after_epoch = false;
    }
    ++counters_.channel_unsubscribes;
    notify(m, notice_ok, frame);
}

void channel_room::publish(member& m, channel_seat& seat, std::string_view channel) {
    seat.expect_payload = true;
    // The same channel as the client's last accepted PUB (the common case of a stream of
    // publishes): checked then, and its frame is shared, so consecutive publishes travel in one
    // unit.
    if (seat.channel_frame && seat_channel(seat) == channel) {
        seat.drop_payload = false;
        return;
    }
    seat.drop_payload = true;
    std::string detail;
    if (auto e = check_name(channel, false, opts_.channels.limits, detail);
        e != channel_error::none) {
        fail(m, e, detail + "; its payload frame is dropped");
        return;
    }
    if (const auto* g = m.grants(); g && !g->may_publish(channel)) {
        fail(m, channel_error::permission_denied,
             "PUB " + std::string(channel) + ": not allowed by the client's " + grantor() +
                 " (publish permissions); its payload frame is dropped");
        return;
    }
    seat.drop_payload = false;
    seat.channel_frame = std::make_shared<const std::string>(encode_frame(channel, opts_.codec));
    seat.heard_generation = 0;
}

void channel_room::broadcast(const relay_unit& unit, const member* origin, std::uint64_t offset,
                             std::uint64_t channel_offset) {
    if (!unit) return;
    decoder dec(opts_.codec, decode_mode::whole);
    const auto channel = channel_of(unit, dec);
    if (channel.empty()) return;
    // Resume: the channel's offsets first; clients with positions get it with its position.
    std::uint64_t first = 0;
    if (history_ && shared_) {
        if (!history_->append_at(channel, channel_offset, offset, unit)) return;  // a repeat
        first = channel_offset;
    } else if (history_) {
        first = history_->append(channel, unit);
    }
    counters_.messages_broadcast += unit.messages;
    const std::uint64_t delivered = deliver_all(unit, channel, first, origin);
    counters_.deliveries += delivered;
    if (!waiting_.empty()) pump_waiting(channel);
    if (opts_.channels.metrics_channels > 0) {
        auto& c = counts_of(channel);
        c.published += unit.messages;
        c.deliveries += delivered;
    }
}

// With a shared log (channel_resume.cpp): a unit of the log's past, kept, not delivered.
void channel_room::history(const relay_unit& unit, std::uint64_t offset,
                           std::uint64_t channel_offset) {
    if (!history_ || !shared_ || !unit) return;
    decoder dec(opts_.codec, decode_mode::whole);
    const auto channel = channel_of(unit, dec);
    if (!channel.empty()) history_->append_at(channel, channel_offset, offset, unit);
}

// Delivers `unit` to the channel's subscribers; returns the messages delivered.
std::uint64_t channel_room::deliver_all(const relay_unit& unit, std::string_view channel,
                                        std::uint64_t first, const member* origin) {
    std::uint64_t delivered = 0;
    // Held by this pointer while delivering: a delivery that closes a slow consumer changes the
    // trie (and the cache), never this list.
    const auto receivers = trie_.match(channel);
    // Built once each, for the first receiver with positions (with sequences).
    relay_unit with_position, with_sequence;
    for (const member* r : *receivers) {
        // Nobody receives anything once it stopped receiving (an expired --auth client
        // awaiting its close).
        if (!r->receives_) continue;
        const auto p = positioned_.empty() ? positioned_.end() : positioned_.find(r);
        const bool has_positions = p != positioned_.end();
        // Nobody receives what it published itself, except a client with positions: it would
        // see a hole in the channel's offsets.
        if (r == origin && !has_positions) continue;
        // A subscription that overlaps a deny of its token: the denied channels are filtered.
        if (r->grants_ && r->grants_->filters_deliveries() && !r->grants_->may_receive(channel)) {
            continue;
        }
        if (has_positions) {
            // Catching up on this channel: its replay will reach this message in the history.
            if (p->second->replaying.contains(channel)) continue;
            const bool sequenced = p->second->sequenced;
            auto& u = sequenced ? with_sequence : with_position;
            if (!u) {
                u = positioned(channel, first, unit.messages, *unit.bytes, unit.origin, sequenced);
            }
            const_cast<member*>(r)->deliver(u);
        } else {
            const_cast<member*>(r)->deliver(unit);
        }
        delivered += unit.messages;
    }
    return delivered;
}

bool channel_room::unheard(const member& m, channel_seat& seat) {
    // With a history every publish is kept, heard or not.
    if (history_) return false;
    const auto generation = trie_.generation() + 1;  // + 1: 0 means "not known"
    if (seat.heard_generation != generation) {
        const auto receivers = trie_.match(seat_channel(seat));
        seat.heard = std::any_of(receivers->begin(), receivers->end(),
                                 [&m](const member* r) { return r != &m; });
        seat.heard_generation = generation;
    }
    return !seat.heard;
}

void channel_room::count_unheard(const channel_seat& seat, std::uint64_t n) {
    counters_.messages_broadcast += n;
    if (opts_.channels.metrics_channels > 0) {
        counts_of(seat_channel(seat)).published += n;
    }
}

channel_room::counts& channel_room::counts_of(std::string_view channel) {
    if (auto it = per_channel_.find(channel); it != per_channel_.end()) return it->second;
    if (per_channel_.size() >= opts_.channels.metrics_channels) return other_;
    return per_channel_.emplace(std::string(channel), counts{}).first->second;
}

std::vector<channel_metric> channel_room::metrics() const {
    std::vector<channel_metric> out;
    if (opts_.channels.metrics_channels == 0) return out;
    for (const auto& [name, c] : per_channel_) out.push_back({name, c.published, c.deliveries});
    out.push_back({"_other", other_.published, other_.deliveries});
    return out;
}

void channel_room::leave(const member& m, channel_seat& seat) {
    positioned_.erase(&m);
    if (!waiting_.empty()) forget_waiting(m, seat);
    forget_fetch(const_cast<member&>(m), seat);
    seat.from_log.clear();
    if (seat.held) {
        std::erase(held_, std::pair<member*, channel_seat*>(const_cast<member*>(&m), &seat));
        seat.held = false;
    }
    seat.positioned = false;
    seat.replaying.clear();
    seat.known.clear();
    seat.sequenced = false;
    for (const auto& p : seat.patterns) trie_.remove(p, &m);
    counters_.channel_unsubscribes += seat.patterns.size();
    seat.patterns.clear();
}

// A notice: a (channel, text) pair like every delivery, for this client only.
void channel_room::notify(member& m, std::string_view channel, std::string_view text) {
    relay_unit_builder b(opts_.codec);
    std::string frames = encode_frame(channel, opts_.codec);
    // The text is cut to what the header and the client's largest message allow.
    const auto max = std::min<std::uint64_t>(opts_.codec.max_message, 4096);
    if (append_frame(frames, text.substr(0, max), opts_.codec)) return;
    b.append_encoded(frames);
    m.deliver(b.take());
}

void channel_room::fail(member& m, channel_error e, std::string_view detail) {
    ++counters_.channel_errors;
    spdlog::debug("client {}: {}: {}", m.peer(), error_code_text(e), detail);
    std::string text(error_code_text(e));
    text += ' ';
    text += detail;
    notify(m, notice_error, text);
}

}  // namespace framecast::io
