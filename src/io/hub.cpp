#include "hub.hpp"

#include <algorithm>
#include <string>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace framecast::io {

using clock = std::chrono::steady_clock;

member::member(hub& h, std::string peer, bool receives_broadcasts)
    : hub_(h), queue_(h.opts_.client_buffer, h.opts_.slow_consumer), peer_(std::move(peer)),
      receives_(receives_broadcasts) {}

void member::deliver(const relay_unit& unit) { hub_.deliver(*this, unit); }

void member::on_written(std::size_t n) { hub_.written(*this, n); }

bool member::mark_closed() noexcept {
    if (closed_) return false;
    closed_ = true;
    // Its frames may be freed now (the memory budget counts them until the last copy goes);
    // the writer never holds a view into the queue across a suspension.
    queue_.clear();
    hub_.account(*this);
    hub_.update_congestion(*this);
    return true;
}

// ---------------------------------------------------------------------------------------------

hub::hub(asio::io_context& io, const server_options& opts, server_counters& counters,
         memory_budget& budget)
    : opts_(opts), counters_(counters), budget_(budget), pace_gate_(io), lag_timer_(io) {}

void hub::add(std::shared_ptr<member> m) {
    m->index_ = members_.size();
    m->id_ = next_id_++;
    by_id_.emplace(m->id_, m.get());
    members_.push_back(std::move(m));
}

void hub::remove(const member& m) {
    if (m.index_ >= members_.size() || members_[m.index_].get() != &m) return;
    by_id_.erase(m.id_);
    const auto i = m.index_;
    if (i + 1 != members_.size()) {
        members_[i] = std::move(members_.back());
        members_[i]->index_ = i;
    }
    members_.pop_back();
}

member* hub::find(std::uint64_t id) const noexcept {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second;
}

void hub::broadcast(const relay_unit& unit, const member* origin) {
    counters_.messages_broadcast += unit.messages;
    // By index: a delivery may close a slow client, but removal is deferred, so the vector
    // does not change under us.
    for (std::size_t i = 0; i < members_.size(); ++i) {
        member& m = *members_[i];
        if (&m == origin || !m.receives_) continue;
        deliver(m, unit);
        counters_.deliveries += unit.messages;
    }
    if (budget_.over()) relieve_memory();
}

void hub::relieve_memory() {
    // Only while the queues are the larger part of the budget: inbound bytes are handled by
    // pausing their readers, and closing every subscriber would not free them.
    std::vector<member*> largest;
    for (auto& m : members_) {
        if (!m->closed_ && !m->queue_.empty()) largest.push_back(m.get());
    }
    std::sort(largest.begin(), largest.end(), [](const member* a, const member* b) {
        return a->queue_.bytes() > b->queue_.bytes();
    });
    for (member* m : largest) {
        if (!budget_.over() || budget_.outbound() < budget_.limit() / 2) return;
        ++counters_.memory_relieved;
        const std::string why = std::to_string(m->queue_.bytes()) +
                                " bytes queued, one of the largest queues while the server is at "
                                "its memory limit (" + std::to_string(budget_.limit()) +
                                " bytes, memory limit)";
        if (opts_.slow_consumer == slow_consumer_policy::disconnect) {
            m->close(close_reason::slow_consumer, why + "; policy disconnect");
            continue;
        }
        const auto r = m->queue_.drop_droppable();
        counters_.slow_dropped_frames += r.dropped_frames;
        counters_.slow_dropped_bytes += r.dropped_bytes;
        if (m->dropped_frames_ == 0) {
            spdlog::warn("client {}: {}; dropping its queued frames (policy drop-oldest)",
                         m->peer_, why);
        }
        m->dropped_frames_ += r.dropped_frames;
        m->dropped_bytes_ += r.dropped_bytes;
        account(*m);
        update_congestion(*m);
    }
}

void hub::deliver(member& m, const relay_unit& unit) {
    if (m.closed_) return;
    const auto before = m.queue_.bytes();
    const auto r = m.queue_.push(unit);
    if (r.overflow) {
        m.close(close_reason::slow_consumer,
                std::to_string(before) + " bytes already queued, limit " +
                    std::to_string(m.queue_.limit()) + " (client buffer); policy disconnect");
        return;
    }
    if (r.dropped_frames > 0) {
        counters_.slow_dropped_frames += r.dropped_frames;
        counters_.slow_dropped_bytes += r.dropped_bytes;
        if (m.dropped_frames_ == 0) {
            spdlog::warn("client {}: slow consumer, queue full ({} bytes, client buffer); "
                         "dropping oldest frames (policy drop-oldest)",
                         m.peer_, before);
        }
        m.dropped_frames_ += r.dropped_frames;
        m.dropped_bytes_ += r.dropped_bytes;
    }
    account(m);
    if (r.queued && m.writer_waiting_) m.wake_writer();
    update_congestion(m);
}

void hub::written(member& m, std::size_t n) {
    counters_.frames_out += m.queue_.consume(n);
    counters_.bytes_out += n;
    account(m);
    if (m.congested_ || m.lagging_) update_congestion(m);
    if (m.queue_.empty() && m.dropped_frames_ > 0) {
        spdlog::warn("client {} caught up after slow-consumer drops: {} frames ({} bytes) dropped",
                     m.peer_, m.dropped_frames_, m.dropped_bytes_);
        m.dropped_frames_ = m.dropped_bytes_ = 0;
    }
}

// queued_total_ follows every queue's size as it changes: O(1) for /healthz. The memory
// budget counts the entries (the frames' bytes are counted once, where they are broadcast).
void hub::account(member& m) noexcept {
    const std::size_t now = m.closed_ ? 0 : m.queue_.bytes();
    queued_total_ = queued_total_ - m.accounted_bytes_ + now;
    m.accounted_bytes_ = now;
    const std::size_t entries = m.closed_ ? 0 : m.queue_.size();
    budget_.sub_entries(m.accounted_entries_);
    budget_.add_entries(entries);
    m.accounted_entries_ = entries;
}

// ---------------------------------------------------------------------------------------------
// Backpressure

namespace {
bool backpressure_on(const server_options& o) { return o.backpressure.count() > 0; }
}  // namespace

// After a member's queue grew or shrank: over half of the client buffer it holds back the
// sources that can wait (until it is back to a quarter, or for at most `backpressure` within a
// hold window, after which it is left to the slow-consumer policy).
void hub::update_congestion(member& m) {
    if (!backpressure_on(opts_) || stopped_) return;
    const std::size_t bytes = m.closed_ ? 0 : m.queue_.bytes();
    const std::size_t limit = m.queue_.limit();
    const auto now = clock::now();
    if (bytes > limit / 2) {
        if (!m.congested_ && !m.lagging_) {
            start_holding(m, now);
        } else if (m.congested_ && !m.blames_all_ && bytes > limit / 4 * 3) {
            // Holding the publishers it blamed did not stop the growth: hold everyone.
            release_blame(m);
            m.blames_all_ = true;
            ++holding_all_;
        }
    } else if (bytes <= limit / 4) {
        m.lagging_ = false;
        if (m.congested_) {
            stop_holding(m, now);
            congestion(-1);
        }
    }
}

namespace {
// The window over which a client's holds add up: ten times the longest single hold.
clock::duration hold_window(const server_options& o) { return 10 * o.backpressure; }
}  // namespace

void hub::start_holding(member& m, clock::time_point now) {
    if (m.hold_window_start_ == clock::time_point{} ||
        now - m.hold_window_start_ > hold_window(opts_)) {
        m.hold_window_start_ = now;
        m.held_ = {};
    }
    if (m.held_ >= opts_.backpressure) {
        // It has held everyone back for its whole share of this window already.
        ++counters_.backpressure_repeat;
        left_behind(m, true);
        return;
    }
    m.congested_ = true;
    m.congested_since_ = now;
    congestion(+1);
    blame(m);
    const auto until = now + (opts_.backpressure - m.held_);
    if (congested_ == 1 || until < lag_timer_.expiry()) arm_lag_timer(until - now);
}

void hub::stop_holding(member& m, clock::time_point now) {
    m.congested_ = false;
    m.held_ += now - m.congested_since_;
    release_blame(m);
}

// Who fills a congested member's queue: the origins holding at least half of a fair share of
// its bytes (1 / (2 x the number of origins in it)). A flooder is held back, a publisher that
// sends a little now and then is not. What cannot be told apart (origin 0: the sources, the
// backplane, which carries every node's publishers) holds everyone, as does a queue with more
// origins than are worth sorting out.
void hub::blame(member& m) {
    constexpr std::size_t max_origins = 64;
    std::vector<std::pair<std::uint64_t, std::size_t>> share;
    for (std::size_t i = 0; i < m.queue_.size(); ++i) {
        const relay_unit& u = m.queue_.unit(i);
        auto it = std::find_if(share.begin(), share.end(),
                               [&](const auto& s) { return s.first == u.origin; });
        if (it != share.end()) {
            it->second += u.size();
        } else if (share.size() < max_origins) {
            share.emplace_back(u.origin, u.size());
        } else {
            share.clear();
            break;
        }
    }
    const std::size_t total = m.queue_.bytes();
    for (const auto& [origin, bytes] : share) {
        if (bytes * 2 * share.size() < total) continue;
        if (origin == 0) {
            m.blamed_.clear();
            break;
        }
        m.blamed_.push_back(origin);
    }
    if (m.blamed_.empty()) {
        m.blames_all_ = true;
        ++holding_all_;
    }
    for (auto origin : m.blamed_) ++held_[origin];
}

// A member no longer congested: those it held may go on (waiters check holds() again).
void hub::release_blame(member& m) {
    for (auto origin : m.blamed_) {
        auto it = held_.find(origin);
        if (it != held_.end() && --it->second == 0) held_.erase(it);
    }
    m.blamed_.clear();
    if (m.blames_all_) --holding_all_;
    m.blames_all_ = false;
    if (pace_waiters_ > 0) pace_gate_.cancel();
}

void hub::left_behind(member& m, bool at_once) {
    m.lagging_ = true;
    ++counters_.backpressure_timeouts;
    const auto level = m.warned_lagging_ ? spdlog::level::debug : spdlog::level::warn;
    m.warned_lagging_ = true;
    const auto ms = std::to_string(opts_.backpressure.count());
    if (!at_once) {
        spdlog::log(level,
                    "client {}: queue over half of the client buffer for {} ms; no longer "
                    "holding back the sources for it (backpressure)",
                    m.peer_, ms);
        return;
    }
    spdlog::log(level,
                "client {}: queue over half of the client buffer again, after holding back the "
                "sources for {} ms within {} s; no longer holding them back for it "
                "(backpressure)",
                m.peer_, ms,
                std::chrono::duration_cast<std::chrono::seconds>(hold_window(opts_)).count());
}

void hub::congestion(int delta) {
    if (delta > 0) {
        if (congested_++ == 0) {
            // Closed: waiters wait until cancel(). Re-arming cancels nobody (there are no
            // waiters while nothing is congested).
            pace_gate_.expires_at(asio::steady_timer::time_point::max());
        }
    } else if (--congested_ == 0) {
        pace_gate_.cancel();
        lag_timer_.cancel();
    }
}

void hub::arm_lag_timer(clock::duration after) {
    lag_timer_.expires_after(after);
    lag_timer_.async_wait([this](error_code ec) {
        if (!ec) on_lag_timer();
    });
}

// A member that held the sources for its share (`backpressure` within its hold window) no
// longer holds them: it is up to the slow-consumer policy whether it catches up, is cut off or
// misses frames.
void hub::on_lag_timer() {
    if (stopped_) return;
    const auto now = clock::now();
    auto earliest = clock::time_point::max();
    for (auto& m : members_) {
        if (!m->congested_) continue;
        const auto until = m->congested_since_ + (opts_.backpressure - m->held_);
        if (until > now) {
            earliest = std::min(earliest, until);
            continue;
        }
        stop_holding(*m, now);
        --congested_;
        left_behind(*m, false);
    }
    if (congested_ == 0) {
        pace_gate_.cancel();
    } else {
        arm_lag_timer(earliest - now);
    }
}

void hub::when_ready(std::function<void()> fn) {
    if (!holds(0)) {
        asio::post(pace_gate_.get_executor(), std::move(fn));
        return;
    }
    ++pace_waiters_;
    ++counters_.backpressure_waits;
    pace_gate_.async_wait([this, fn = std::move(fn)](error_code) {
        --pace_waiters_;
        fn();
    });
}

asio::awaitable<void> hub::wait_paced() {
    ++pace_waiters_;
    ++counters_.backpressure_waits;
    co_await pace_gate_.async_wait(use_nothrow);
    --pace_waiters_;
}

void hub::stop_pacing() {
    stopped_ = true;
    congested_ = 0;
    held_.clear();
    holding_all_ = 0;
    pace_gate_.cancel();
    lag_timer_.cancel();
}

}  // namespace framecast::io
