// Fan-out bookkeeping shared by the subscriber load generators: deliveries, and for each
// message the time its last subscriber (in this process) got it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"

namespace bench {

class fanout_tracker {
public:
    fanout_tracker(std::uint64_t subscribers, std::uint64_t count)
        : k_(subscribers), arrivals_(count, 0), sent_(count, 0), last_(count, 0) {}

    // One message delivered to one subscriber, at `now`. Callers read the clock once per read
    // from the socket, not once per message: every frame of one recv() had arrived by then, and
    // a clock read per message was 15-20% of the subscriber process's time at K = 10,000, where
    // that process is the busy end (docs/bench.md, "The fan-out subscriber"). False when it is
    // not a benchmark message; else `seq` is its sequence number.
    bool on_message(std::string_view payload, std::int64_t now, std::uint64_t& seq) {
        std::int64_t t = 0;
        if (!read_stamp(payload, seq, t) || seq >= arrivals_.size()) return false;
        if (deliveries_ == 0) first_ns_ = now, cpu_at_first_ = cpu_ns();
        last_ns_ = now;
        ++deliveries_;
        sent_[seq] = t;
        if (++arrivals_[seq] == k_) last_[seq] = now;
        return true;
    }

    std::uint64_t deliveries() const { return deliveries_; }
    bool has_last(std::uint64_t seq) const { return seq < last_.size() && last_[seq] != 0; }

    // "seq sent_ns last_ns" for each message every subscriber here got (the driver merges the
    // files of several subscriber processes), and the summary line on stdout.
    void report(const char* system, std::uint64_t size, const std::string& path) const {
        const std::int64_t cpu = cpu_ns() - cpu_at_first_;  // before the sort and the file
        std::vector<double> us;
        FILE* f = path.empty() ? nullptr : std::fopen(path.c_str(), "w");
        for (std::size_t i = 0; i < last_.size(); ++i) {
            if (last_[i] == 0) continue;
            us.push_back(static_cast<double>(last_[i] - sent_[i]) / 1e3);
            if (f) std::fprintf(f, "%zu %lld %lld\n", i, static_cast<long long>(sent_[i]),
                                static_cast<long long>(last_[i]));
        }
        if (f) std::fclose(f);
        std::sort(us.begin(), us.end());
        double s = static_cast<double>(last_ns_ - first_ns_) / 1e9;
        result r;
        r.add("system", system).add("scenario", "fanout").add("size", size).add("k", k_)
            .add("count", static_cast<std::uint64_t>(last_.size()))
            .add("delivered", deliveries_)
            .add("expected", k_ * last_.size())
            .add("complete", static_cast<std::uint64_t>(us.size()))
            .add("first_ns", static_cast<std::uint64_t>(first_ns_))
            .add("last_ns", static_cast<std::uint64_t>(last_ns_))
            .add("seconds", s)
            // this process's CPU time (user + system) from its first delivery to the report:
            // near `seconds` when the subscribers are the busy end of the run
            .add("sub_cpu_s", static_cast<double>(cpu) / 1e9)
            .add("msgs_per_s", s > 0 ? static_cast<double>(deliveries_) / s : 0.0)
            .add("p50_us", percentile(us, 50)).add("p99_us", percentile(us, 99));
        r.print();
    }

private:
    static std::int64_t cpu_ns() { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

    std::uint64_t k_;
    std::vector<std::uint32_t> arrivals_;
    std::vector<std::int64_t> sent_;
    std::vector<std::int64_t> last_;
    std::uint64_t deliveries_ = 0;
    std::int64_t first_ns_ = 0;
    std::int64_t last_ns_ = 0;
    std::int64_t cpu_at_first_ = 0;
};

}  // namespace bench
