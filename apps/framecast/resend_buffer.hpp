// The publisher's side of publish acks: messages taken from the input, numbered 1, 2, 3, ...
// and kept (as the frames that carry them) until the server acknowledges them. One buffer of
// bytes plus each message's end: no allocation per message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace framecast::app {

class resend_buffer {
public:
    // Numbers the next message; keeps its frames unless the server already has that number
    // (a rerun with the same --publisher-id: skipped). True when kept.
    bool append(std::string_view frames) {
        const std::uint64_t seq = next_++;
        if (seq <= acked_) {
            ++skipped_;
            return false;
        }
        if (ends_.empty()) base_ = seq;
        buf_.append(frames);
        ends_.push_back(buf_.size());
        return true;
    }
    // The server has every message up to `seq`: they are freed.
    void release(std::uint64_t seq) {
        if (seq <= acked_) return;
        acked_ = seq;
        while (!ends_.empty() && base_ <= seq) {
            head_ = ends_.front();
            ends_.pop_front();
            ++base_;
        }
        if (ends_.empty()) {
            buf_.clear();
            head_ = 0;
        }
    }
    // Gives back the space of freed messages (not while a view from frames_from() is used).
    void compact() {
        if (head_ == 0 || head_ < buf_.size() / 2) return;
        buf_.erase(0, head_);
        for (auto& e : ends_) e -= head_;
        head_ = 0;
    }
    // The frames of every held message from number `seq` on (`seq` must be held, or next()).
    std::string_view frames_from(std::uint64_t seq) const {
        if (ends_.empty() || seq >= next_) return {};
        const std::size_t i = static_cast<std::size_t>(seq - base_);
        const std::size_t start = i == 0 ? head_ : ends_[i - 1];
        return std::string_view(buf_).substr(start);
    }
    // The lowest number held (next() when none).
    std::uint64_t first_held() const noexcept { return ends_.empty() ? next_ : base_; }
    std::uint64_t next() const noexcept { return next_; }      // the next message's number
    std::uint64_t acked() const noexcept { return acked_; }    // the server has up to here
    std::size_t held_bytes() const noexcept { return buf_.size() - head_; }
    std::size_t held_messages() const noexcept { return ends_.size(); }
    std::uint64_t skipped() const noexcept { return skipped_; }

private:
    std::string buf_;
    std::size_t head_ = 0;          // where the first held message starts in buf_
    std::deque<std::size_t> ends_;  // each held message's end in buf_
    std::uint64_t base_ = 1;        // the number of the first held message
    std::uint64_t next_ = 1;
    std::uint64_t acked_ = 0;
    std::uint64_t skipped_ = 0;
};

}  // namespace framecast::app
