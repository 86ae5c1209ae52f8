// Bounds the log volume of repeated per-connection lines (a client closed for bad input, a
// connection refused at a limit): at most `burst` lines of one kind per window; the rest are
// counted, and the next line logged says "N more like this in the last 10 s". One instance per
// kind of line, on the server's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace framecast::io {

class log_throttle {
public:
    using clock = std::chrono::steady_clock;
    static constexpr std::chrono::seconds window{10};

    // Implicit: session_context holds an array of them, aggregate-initialised.
    log_throttle(std::uint32_t burst = 20) noexcept : burst_(burst) {}

    // Whether to log this line now. When it is logged after some were suppressed, `suffix`
    // says how many (" (412 more like this in the last 10 s)"), else it is empty.
    bool allow(std::string& suffix, clock::time_point now = clock::now()) {
        suffix.clear();
        if (now - start_ >= window) {
            if (suppressed_ > 0) {
                suffix = " (" + std::to_string(suppressed_) + " more like this in the last " +
                         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                            now - start_).count()) + " s)";
            }
            start_ = now;
            logged_ = 0;
            suppressed_ = 0;
        }
        if (logged_ < burst_) {
            ++logged_;
            return true;
        }
        ++suppressed_;
        return false;
    }

private:
    std::uint32_t burst_;
    clock::time_point start_{};
    std::uint32_t logged_ = 0;
    std::uint64_t suppressed_ = 0;
};

}  // namespace framecast::io
