// A token bucket: at most `rate` messages per second on average, bursts up to `rate`. A rate of
// 0 allows everything. The caller passes the time, so tests need no clock.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace framecast::io {

class rate_limiter {
public:
    using clock = std::chrono::steady_clock;

    explicit rate_limiter(std::uint64_t rate) noexcept : rate_(rate) {}

    // Takes a token for one message at `now`; false when none is left (a flood).
    bool allow(clock::time_point now) noexcept { return allow(now, 1); }

    // Takes `n` tokens (bytes) at once: allowed while at least one is left, so a read larger
    // than the bucket may borrow (the balance goes negative and refills first).
    bool allow(clock::time_point now, std::uint64_t n) noexcept {
        if (rate_ == 0) return true;
        if (last_ == clock::time_point{}) {
            tokens_ = static_cast<double>(rate_);
        } else {
            const double refill = std::chrono::duration<double>(now - last_).count() *
                                  static_cast<double>(rate_);
            tokens_ = std::min<double>(static_cast<double>(rate_), tokens_ + refill);
        }
        last_ = now;
        if (tokens_ < 1.0) return false;
        tokens_ -= static_cast<double>(n);
        return true;
    }

    std::uint64_t rate() const noexcept { return rate_; }

private:
    std::uint64_t rate_;
    double tokens_ = 0;
    clock::time_point last_{};
};

}  // namespace framecast::io
