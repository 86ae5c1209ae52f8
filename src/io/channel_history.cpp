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

std::uint64_t channel_history::append(std::string_view channel, const relay_unit& unit) {
    auto it = records_.find(channel);
    if (it == records_.end()) {
        if (records_.size() >= scan_at_) forget_idle();
        std::unique_ptr<record> r(
            new record{resume_log({limits_.window, limits_.total_bytes}, codec_, budget_, 2), 0});
        r->log.reset(floor_ + 1);
        it = records_.emplace(std::string(channel), std::move(r)).first;
    }
    record& r = *it->second;
    const std::size_t units_before = r.log.units();
    const std::size_t messages_before = r.log.messages();
    const std::size_t bytes_before = r.log.bytes();
    const std::uint64_t first = r.log.append(unit);
    if (!unit) return first;
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
    return first;
}

// The process-wide bound: the oldest unit of all goes first, always keeping the newest one.
void channel_history::bound() {
    while (units_ > 1 && !order_.empty() &&
           (messages_ > limits_.total_messages || bytes_ > limits_.total_bytes)) {
        const held h = order_.front();
        order_.pop_front();
        if (stale(h)) continue;
        const auto [m, b] = h.r->log.drop_oldest();
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
    std::erase_if(records_, [](const auto& kv) { return kv.second->log.empty(); });
    if (records_.size() != before) floor_ = total_;
    // Channels that all hold history are bounded by the total bound: the next scan waits
    // until their number doubles, so a scan costs O(1) per new channel.
    scan_at_ = std::max(limits_.idle_channels, 2 * records_.size());
}

std::size_t channel_history::read(std::string_view channel, std::uint64_t from,
                                  std::size_t max_bytes, std::string& out,
                                  std::uint64_t& first) const {
    first = 0;
    const record* r = find(channel);
    return r ? r->log.read(from, max_bytes, out, first) : 0;
}

}  // namespace framecast::io
