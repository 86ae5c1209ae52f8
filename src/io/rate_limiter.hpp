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

    explicit rate_limiter(std::uint32_t rate) noexcept : rate_(rate) {}

    // Takes a token for one message at `now`; false when none is left (a flood).
    bool allow(clock::time_point now) noexcept {
        if (rate_ == 0) return true;
        if (last_ == clock::time_point{}) {
            tokens_ = rate_;
        } else {
            const double refill = std::chrono::duration<double>(now - last_).count() * rate_;
            tokens_ = std::min<double>(rate_, tokens_ + refill);
        }
        last_ = now;
        if (tokens_ < 1.0) return false;
        tokens_ -= 1.0;
        return true;
    }

    std::uint32_t rate() const noexcept { return rate_; }

private:
    std::uint32_t rate_;
    double tokens_ = 0;
    clock::time_point last_{};
};

}  // namespace framecast::io
