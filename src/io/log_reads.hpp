// Reads of a shared log's past for resuming clients (resume_room_fetch.cpp for the single
// stream, channel_fetch.cpp for channels): at most `limit` in flight at once, the clients
// waiting for one in arrival order, and who each read is for (by ticket, so a read that comes
// back for a client that left is recognised and dropped). Each client has at most one read in
// flight or one place in the queue; its seat keeps `fetching`, `queued` and `ticket`. No I/O.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>

namespace framecast::io {

class member;

class log_reads {
public:
    explicit log_reads(std::size_t limit) : limit_(std::max<std::size_t>(limit, 1)) {}

    // A read for `m` may start now: true with `ticket` set (the seat is then `fetching`);
    // false when all are busy: `m` waits in the queue (the seat is then `queued`).
    bool start(member* m, std::uint64_t& ticket) {
        if (in_flight_ >= limit_) {
            queue_.push_back(m);
            return false;
        }
        ++in_flight_;
        ticket = next_ticket_++;
        tickets_.emplace(ticket, m);
        return true;
    }
    // The read `ticket` came back: the client it was for, or null if that one left.
    member* finish(std::uint64_t ticket) {
        --in_flight_;
        const auto it = tickets_.find(ticket);
        if (it == tickets_.end()) return nullptr;
        member* m = it->second;
        tickets_.erase(it);
        return m;
    }
    // The next client waiting for a read while one is free (null: none).
    member* next_waiting() {
        if (in_flight_ >= limit_ || queue_.empty()) return nullptr;
        member* m = queue_.front();
        queue_.pop_front();
        return m;
    }
    // `m` leaves: its read in flight still counts until it is back, but is for nobody.
    void forget(member* m, bool fetching, std::uint64_t ticket, bool queued) {
        if (fetching) tickets_.erase(ticket);
        if (queued) std::erase(queue_, m);
    }

private:
    std::size_t limit_;
    std::size_t in_flight_ = 0;
    std::uint64_t next_ticket_ = 1;
    std::unordered_map<std::uint64_t, member*> tickets_;
    std::deque<member*> queue_;
};

}  // namespace framecast::io
