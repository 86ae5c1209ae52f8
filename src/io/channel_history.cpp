#include "channel_history.hpp"

#include <algorithm>

namespace framecast::io {

channel_history::channel_history(channel_history_limits limits, const codec_options& codec,
                                 memory_budget* budget)
    : limits_(limits), codec_(codec), budget_(budget),
      scan_at_(std::max<std::size_t>(limits.idle_channels, 1)) {}

channel_history::~channel_history() = default;

const channel_history::record* channel_history::find(std::string_view channel) const {
    const auto it = records_.find(channel);
    return it == records_.end() ? nullptr : it->second.get();
}

std::uint64_t channel_history::next(std::string_view channel) const {
    const record* r = find(channel);
    return r ? r->log.next() : floor_ + 1;
}

std::uint64_t channel_history::oldest(std::string_view channel) const {
    const record* r = find(channel);
    return r ? r->log.oldest() : floor_ + 1;
}

// `channel`'s record, made (its first offset `first_offset`) when it has none.
channel_history::record& channel_history::record_of(std::string_view channel,
                                                    std::uint64_t first_offset) {
    auto it = records_.find(channel);
    if (it == records_.end()) {
        if (records_.size() >= scan_at_) forget_idle();
        std::unique_ptr<record> r(new record{
            resume_log({limits_.window, limits_.total_bytes}, codec_, budget_, 2), 0, {}});
        r->log.reset(first_offset);
        it = records_.emplace(std::string(channel), std::move(r)).first;
    }
    return *it->second;
}

std::uint64_t channel_history::append(std::string_view channel, const relay_unit& unit) {
    record& r = record_of(channel, floor_ + 1);
    const std::uint64_t first = r.log.next();
    if (unit) keep(r, unit);
    return first;
}

bool channel_history::append_at(std::string_view channel, std::uint64_t offset,
                                std::uint64_t sequence, const relay_unit& unit) {
    if (!unit || offset == 0 || sequence <= total_) return false;  // a repeat
    record& r = record_of(channel, offset);
    if (offset != r.log.next()) {
        // A hole (the log forgot the channel, or an entry was refused here), or numbers that
        // disagree with what is held (a forged entry went first): the log's numbers win.
        clear(r);
        r.log.reset(offset);
    }
    total_ = sequence - 1;  // the log's sequence: a hole (an entry refused here) is skipped
    keep(r, unit);
    return true;
}

// Keeps `unit` at `r`'s next offset, with the next sequence.
void channel_history::keep(record& r, const relay_unit& unit) {
    const std::size_t units_before = r.log.units();
    const std::size_t messages_before = r.log.messages();
    const std::size_t bytes_before = r.log.bytes();
    const std::uint64_t first = r.log.append(unit);
    if (r.first_seq == 0) {
        r.first_offset = first;
        r.first_seq = total_ + 1;
    }
    r.seqs.push_back({first, total_ + 1, unit.messages});
    r.last_seq = total_ + unit.messages;
    drop_seqs(r, units_before + 1 - r.log.units());
    // The channel's own window may have dropped some of its oldest units.
    units_ = units_ + r.log.units() - units_before;
    messages_ = messages_ + r.log.messages() - messages_before;
    bytes_ = bytes_ + r.log.bytes() - bytes_before;
    total_ += unit.messages;
    order_.push_back({&r, r.serial++});
    bound();
    // Entries of units a channel's window dropped stay until they reach the front: compacted
    // when they outnumber the live ones, so the index stays proportional to what is held.
    if (order_.size() > 2 * units_ + 64) {
        std::erase_if(order_, [this](const held& h) { return stale(h); });
    }
}

// Drops all `r` holds (its entries in order_ become stale).
void channel_history::clear(record& r) {
    while (!r.log.empty()) {
        const auto [m, b] = r.log.drop_oldest();
        drop_seqs(r, 1);
        --units_;
        messages_ -= m;
        bytes_ -= b;
    }
}

void channel_history::known(std::string_view channel, std::uint64_t last) {
    if (channel.empty()) {
        floor_ = last;
        return;
    }
    if (!contains(channel)) record_of(channel, last + 1);
}

void channel_history::restart(std::uint64_t first) {
    order_.clear();
    records_.clear();
    units_ = messages_ = bytes_ = 0;
    total_ = first == 0 ? 0 : first - 1;
    floor_ = total_;
    forgotten_seq_ = total_;
    scan_at_ = std::max<std::size_t>(limits_.idle_channels, 1);
}

// The process-wide bound: the oldest unit of all goes first, always keeping the newest one.
void channel_history::bound() {
    while (units_ > 1 && !order_.empty() &&
           (messages_ > limits_.total_messages || bytes_ > limits_.total_bytes)) {
        const held h = order_.front();
        order_.pop_front();
        if (stale(h)) continue;
        const auto [m, b] = h.r->log.drop_oldest();
        drop_seqs(*h.r, 1);
        --units_;
        messages_ -= m;
        bytes_ -= b;
    }
}

// Too many channels: those whose history is empty are forgotten. Their offsets were at most
// total_, so a channel created from now on starts above that: none reuses an offset.
void channel_history::forget_idle() {
    std::erase_if(order_, [this](const held& h) { return stale(h); });
    const auto before = records_.size();
    std::erase_if(records_, [this](const auto& kv) {
        if (!kv.second->log.empty()) return false;
        forgotten_seq_ = std::max(forgotten_seq_, kv.second->last_seq);
        return true;
    });
    if (records_.size() != before) floor_ = total_;
    // Channels that all hold history are bounded by the total bound: the next scan waits
    // until their number doubles, so a scan costs O(1) per new channel.
    scan_at_ = std::max(limits_.idle_channels, 2 * records_.size());
}

// The log dropped its `units` oldest units: so do their sequences.
void channel_history::drop_seqs(record& r, std::size_t units) {
    for (; units > 0 && !r.seqs.empty(); --units) {
        const auto& u = r.seqs.front();
        r.dropped_seq = u.seq + u.count - 1;
        r.seqs.pop_front();
    }
}

channel_history::since_result channel_history::since(std::string_view channel,
                                                     std::uint64_t after) const {
    since_result out;
    const record* r = find(channel);
    if (!r) {
        out.from = floor_ + 1;
        return out;
    }
    out.from = r->log.next();
    // The first unit whose last message is above `after` (sequences grow along the deque).
    const auto it = std::partition_point(r->seqs.begin(), r->seqs.end(), [after](const auto& u) {
        return u.seq + u.count - 1 <= after;
    });
    if (it != r->seqs.end()) out.from = it->offset + (after >= it->seq ? after + 1 - it->seq : 0);
    if (r->dropped_seq > after) {
        out.lost = r->log.oldest() - r->first_offset;
        out.lost_at_most = r->first_seq <= after;
    }
    return out;
}

void channel_history::channels_after(std::uint64_t after,
                                     const std::function<void(std::string_view)>& f) const {
    for (const auto& [name, r] : records_) {
        if (r->last_seq > after) f(name);
    }
}

std::size_t channel_history::read(std::string_view channel, std::uint64_t from,
                                  std::size_t max_bytes, std::string& out,
                                  std::uint64_t& first) const {
    first = 0;
    const record* r = find(channel);
    return r ? r->log.read(from, max_bytes, out, first) : 0;
}

}  // namespace framecast::io
