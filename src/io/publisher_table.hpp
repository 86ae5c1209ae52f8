// Publishing that survives reconnects (docs/resume.md, "Publishing"): the server's memory of
// each publisher that asked with "@publish NONCE PUBLISHER [FIRST]": the last sequence number
// it accepted from it. A frame whose sequence number is not above it is a duplicate (resent
// after a reconnection, or still arriving on a half-open old connection) and is dropped.
// Bounded by count; a publisher with no connection is forgotten after an idle expiry, or
// sooner when the table is full (the longest idle first). No I/O here: the session calls it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace framecast::io {

struct publisher_limits {
    std::size_t max_publishers = 10'000;
    std::chrono::milliseconds expiry{std::chrono::minutes(10)};
};

class publisher_table {
public:
    using clock = std::chrono::steady_clock;

    struct entry {
        std::string id;
        std::uint64_t last = 0;       // the last sequence number accepted
        std::size_t connections = 0;  // sessions attached now
        clock::time_point idle_since{};
        std::list<entry*>::iterator idle_pos{};  // in idle_ while connections == 0
    };

    // A parsed request: "@publish NONCE PUBLISHER [FIRST]".
    struct request {
        std::string_view nonce;
        std::string_view publisher;
        std::uint64_t first = 1;  // the first message the client still holds
    };

    explicit publisher_table(publisher_limits limits) : limits_(limits) {}
    publisher_table(const publisher_table&) = delete;
    publisher_table& operator=(const publisher_table&) = delete;

    // Whether a first frame is a publish request (starts with "@publish ").
    static bool is_request(std::string_view payload) noexcept;
    // "" when `payload` is a well-formed request (then `out` holds its words, views into
    // `payload`), else a sentence saying what is wrong.
    static std::string parse(std::string_view payload, request& out);

    // A connection of `publisher` begins: its entry (made if new; its `last` raised to
    // FIRST - 1: the client no longer holds what came before, so that was accepted). Null when
    // the table is full and every publisher in it is connected.
    entry* attach(std::string_view publisher, std::uint64_t first, clock::time_point now);
    // A connection attached to `e` ended.
    void detach(entry& e, clock::time_point now);
    // The message numbered `seq` from `e`: true when it is new (accepted: `last` moves to it),
    // false when it was accepted before (a duplicate, to drop).
    static bool accept(entry& e, std::uint64_t seq) noexcept;

    std::size_t size() const noexcept { return entries_.size(); }
    // Publishers forgotten while the table was full before their idle expiry.
    std::uint64_t evicted() const noexcept { return evicted_; }
    // Publishers forgotten after the idle expiry.
    std::uint64_t expired() const noexcept { return expired_; }

private:
    void expire(clock::time_point now);
    void forget(entry& e);

    publisher_limits limits_;
    std::unordered_map<std::string, entry> entries_;  // nodes: entry addresses are stable
    std::list<entry*> idle_;                          // no connection, the longest idle first
    std::uint64_t evicted_ = 0;
    std::uint64_t expired_ = 0;
};

}  // namespace framecast::io
