#include "resume_log.hpp"

#include <algorithm>
#include <span>

#include "memory_budget.hpp"

namespace framecast::io {

resume_log::resume_log(resume_limits limits, const codec_options& codec, memory_budget* budget,
                       std::size_t frames_per_message)
    : limits_(limits), codec_(codec), budget_(budget),
      frames_per_message_(std::max<std::size_t>(frames_per_message, 1)) {}

resume_log::~resume_log() {
    if (budget_) budget_->sub_entries(entries_.size());
}

std::uint64_t resume_log::append(const relay_unit& unit) {
    const std::uint64_t first = next_;
    if (!unit) return first;
    entries_.push_back({first, unit});
    next_ += unit.messages;
    messages_ += unit.messages;
    bytes_ += unit.size();
    if (budget_) budget_->add_entries(1);
    evict();
    return first;
}

bool resume_log::append_at(std::uint64_t first, const relay_unit& unit) {
    if (first < next_) return false;
    if (first > next_) reset(first);
    append(unit);
    return true;
}

void resume_log::reset(std::uint64_t next) {
    while (!entries_.empty()) pop_front();
    next_ = next;
}

std::pair<std::size_t, std::size_t> resume_log::drop_oldest() {
    const std::pair<std::size_t, std::size_t> gone{entries_.front().unit.messages,
                                                   entries_.front().unit.size()};
    pop_front();
    return gone;
}

void resume_log::pop_front() {
    messages_ -= entries_.front().unit.messages;
    bytes_ -= entries_.front().unit.size();
    entries_.pop_front();
    if (budget_) budget_->sub_entries(1);
}

// Whole units go: the window may hold a few messages more than asked, never fewer (unless
// the byte bound is reached first).
void resume_log::evict() {
    while (entries_.size() > 1 &&
           (messages_ - entries_.front().unit.messages >= limits_.messages ||
            bytes_ > limits_.bytes)) {
        pop_front();
    }
}

std::size_t message_position(const relay_unit& unit, std::size_t skip, const codec_options& codec,
                             std::size_t frames_per_message) {
    if (skip == 0) return 0;
    // A unit holds one frame per message (plain streams) or a pair (channels); find where
    // message `skip` starts.
    decoder dec(codec, decode_mode::whole);
    std::span<const char> in(unit.bytes->data(), unit.bytes->size());
    const std::size_t frames = skip * frames_per_message;
    for (std::size_t n = 0; n < frames && dec.next(in) == decode_event::frame; ++n) {
    }
    return unit.bytes->size() - in.size();
}

std::size_t resume_log::position(const relay_unit& unit, std::size_t skip) const {
    return message_position(unit, skip, codec_, frames_per_message_);
}

std::size_t resume_log::read(std::uint64_t from, std::size_t max_bytes, std::string& out,
                             std::uint64_t& first) const {
    first = 0;
    if (entries_.empty() || from >= next_) return 0;
    from = std::max(from, oldest());
    // The unit holding `from`: the last one whose first offset is <= from.
    auto it = std::upper_bound(entries_.begin(), entries_.end(), from,
                               [](std::uint64_t o, const entry& e) { return o < e.first; });
    --it;
    first = from;
    std::size_t count = 0;
    std::size_t taken = 0;
    for (; it != entries_.end(); ++it) {
        const auto skip = static_cast<std::size_t>(from - it->first);
        const std::size_t at = position(it->unit, skip);
        const std::size_t len = it->unit.size() - at;
        if (count > 0 && taken + len > max_bytes) break;
        out.append(it->unit.bytes->data() + at, len);
        taken += len;
        count += it->unit.messages - skip;
        from = it->first + it->unit.messages;
    }
    return count;
}

}  // namespace framecast::io
