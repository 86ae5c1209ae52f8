// serve --resume --backplane: reads pieces of the Redis stream's past for resuming clients
// whose position their node no longer holds in memory (docs/resume.md, "Several nodes").
// One thread and one connection of its own, like the backplane's reader and appender: an
// XRANGE never waits behind a blocking XREAD, and the io thread never waits on Redis. Requests
// are served one at a time, in order; the server bounds how many are outstanding.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "framecast/backplane.hpp"
#include "redis_commands.hpp"

namespace framecast::backplane {

class redis_replay {
public:
    // `connect` makes a ready connection (AUTH done) or returns null, having logged why.
    redis_replay(std::string key, std::string describe, std::function<redis::context_ptr()> connect);
    ~redis_replay();
    redis_replay(const redis_replay&) = delete;
    redis_replay& operator=(const redis_replay&) = delete;

    // Queues a read (backplane::read_history); the thread starts with the first one.
    void request(std::string epoch, std::uint64_t from, std::size_t max_entries,
                 std::size_t max_bytes, std::function<void(history_range)> done);
    // Ends the thread; requests not yet served are dropped (their `done` is never called).
    void stop();

private:
    struct job {
        std::string epoch;
        std::uint64_t from = 0;
        std::size_t max_entries = 0;
        std::size_t max_bytes = 0;
        std::function<void(history_range)> done;
    };
    void loop();
    history_range serve(const job& j);
    history_range read(redisContext* c, const job& j);

    const std::string key_;
    const std::string describe_;
    std::function<redis::context_ptr()> connect_;
    redis::context_ptr conn_;  // the thread's only
    std::chrono::steady_clock::time_point retry_at_{};  // the thread's: no connect before it

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<job> jobs_;  // guarded by mu_
    bool stopping_ = false;  // guarded by mu_
    std::thread thread_;     // started under mu_
};

}  // namespace framecast::backplane
