// Delays between reconnection attempts: exponential growth from `min` up to `max`, with random
// jitter so that many clients losing one server do not come back in lockstep. Header-only and
// Asio-free (the Redis backplane uses it on plain threads).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace framecast::io {

class backoff {
public:
    using duration = std::chrono::steady_clock::duration;

    enum class jitter {
        // A uniform point in [0, min * 2^attempt], capped at max ("full jitter").
        full,
        // A uniform point in [min, 3 * previous delay], capped at max ("decorrelated jitter"):
        // never below min, so a dead peer is not hammered.
        decorrelated,
    };

    struct options {
        duration min = std::chrono::milliseconds(100);
        duration max = std::chrono::seconds(30);
        jitter kind = jitter::decorrelated;
    };

    // `seed` makes the sequence reproducible (tests); by default it is random per instance.
    explicit backoff(options opts, std::uint64_t seed = std::random_device{}())
        : opts_(clamped(opts)), rng_(seed) {
        reset();
    }

    // The delay before the next attempt; each call grows the window (up to max).
    duration next() {
        const double lo = opts_.kind == jitter::full ? 0.0 : ticks(opts_.min);
        const double hi = opts_.kind == jitter::full ? ticks(window_) : ticks(previous_) * 3;
        std::uniform_real_distribution<double> pick(lo, std::max(lo, hi));
        auto d = std::min(opts_.max, duration(static_cast<duration::rep>(pick(rng_))));
        if (opts_.kind == jitter::full) {
            window_ = window_ > opts_.max / 2 ? opts_.max : window_ * 2;
        } else {
            previous_ = std::max(d, opts_.min);
        }
        return d;
    }

    // A connection worked: the next failure starts again from min.
    void reset() {
        window_ = opts_.min;
        previous_ = opts_.min;
    }

    const options& settings() const noexcept { return opts_; }

private:
    static options clamped(options o) {
        if (o.max < duration::zero()) o.max = duration::zero();
        o.min = std::clamp(o.min, duration::zero(), o.max);
        return o;
    }
    static double ticks(duration d) { return static_cast<double>(d.count()); }

    options opts_;
    std::mt19937_64 rng_;
    duration window_{};    // full: the current upper bound
    duration previous_{};  // decorrelated: the last delay given
};

}  // namespace framecast::io
