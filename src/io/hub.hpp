// The hub: the registry of clients (ids never reused, O(1) find and remove), broadcast of relay
// units to their queues, the slow-consumer policy on delivery, and backpressure (sources that
// can wait are held while some client's queue is over half full, each client for at most
// server_options::backpressure).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "framecast/io/server.hpp"
#include "member.hpp"
#include "memory_budget.hpp"

namespace framecast::io {

class hub {
public:
    hub(asio::io_context& io, const server_options& opts, server_counters& counters,
        memory_budget& budget);

    // Registers `m` under a new id.
    void add(std::shared_ptr<member> m);
    // Unregisters a closed member (no-op if it is not registered).
    void remove(const member& m);
    member* find(std::uint64_t id) const noexcept;
    std::size_t size() const noexcept { return members_.size(); }
    const std::vector<std::shared_ptr<member>>& members() const noexcept { return members_; }

    // Queues `unit` for every member that receives broadcasts, except `origin`.
    void broadcast(const relay_unit& unit, const member* origin);
    // At the memory limit: applies the slow-consumer policy to the largest queues first until
    // the budget is back under it (or no queue is left to relieve).
    void relieve_memory();

    // Backpressure: whether `publisher` (a client's id; 0: the sources) is held back now,
    // because its traffic fills the queue of a member over half full (see blame()).
    bool holds(std::uint64_t publisher) const noexcept {
        if (congested_ == 0) return false;
        return holding_all_ > 0 || held_.count(publisher) > 0;
    }
    // Runs `fn` (posted) once the sources are not held; it may be run early: check again.
    void when_ready(std::function<void()> fn);
    // A publishing client's reader: waits until the holds change; it checks holds() again.
    asio::awaitable<void> wait_paced();
    // Shutdown: nothing new is published, let nobody wait any more.
    void stop_pacing();

    std::size_t queued_bytes_total() const noexcept { return queued_total_; }
    memory_budget& budget() noexcept { return budget_; }

private:
    friend class member;
    void deliver(member& m, const relay_unit& unit);
    void written(member& m, std::size_t n);
    void account(member& m) noexcept;
    void update_congestion(member& m);
    void start_holding(member& m, std::chrono::steady_clock::time_point now);
    void stop_holding(member& m, std::chrono::steady_clock::time_point now);
    void blame(member& m);
    void release_blame(member& m);
    void left_behind(member& m, bool at_once);
    void congestion(int delta);
    void arm_lag_timer(std::chrono::steady_clock::duration after);
    void on_lag_timer();

    const server_options& opts_;
    server_counters& counters_;
    memory_budget& budget_;
    std::vector<std::shared_ptr<member>> members_;
    std::unordered_map<std::uint64_t, member*> by_id_;
    std::uint64_t next_id_ = 1;
    std::size_t queued_total_ = 0;
    // Members over half their queue, not yet left behind. Waiters wait on pace_gate_, which
    // never expires and is cancelled when congested_ drops to 0; lag_timer_ bounds each
    // member's hold on them.
    std::size_t congested_ = 0;
    // The publishers the congested members hold back (by how many of them), and how many
    // congested members hold everyone (their queue fills with what cannot be told apart).
    std::unordered_map<std::uint64_t, std::size_t> held_;
    std::size_t holding_all_ = 0;
    std::size_t pace_waiters_ = 0;
    bool stopped_ = false;
    asio::steady_timer pace_gate_;
    asio::steady_timer lag_timer_;
};

}  // namespace framecast::io
