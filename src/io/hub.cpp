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
    hub_.account(*this);
    hub_.update_congestion(*this);
    return true;
}

// ---------------------------------------------------------------------------------------------

hub::hub(asio::io_context& io, const server_options& opts, server_counters& counters)
    : opts_(opts), counters_(counters), pace_gate_(io), lag_timer_(io) {}

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

// queued_total_ follows every queue's size as it changes: O(1) for /healthz.
void hub::account(member& m) noexcept {
    const std::size_t now = m.closed_ ? 0 : m.queue_.bytes();
    queued_total_ = queued_total_ - m.accounted_bytes_ + now;
    m.accounted_bytes_ = now;
}

// ---------------------------------------------------------------------------------------------
// Backpressure

namespace {
bool backpressure_on(const server_options& o) { return o.backpressure.count() > 0; }
}  // namespace

// After a member's queue grew or shrank: over half of the client buffer it holds back the
// sources that can wait (until it is back to a quarter, or for at most `backpressure`, after
// which it is left to the slow-consumer policy).
void hub::update_congestion(member& m) {
    if (!backpressure_on(opts_) || stopped_) return;
    const std::size_t bytes = m.closed_ ? 0 : m.queue_.bytes();
    const std::size_t limit = m.queue_.limit();
    if (bytes > limit / 2) {
        if (!m.congested_ && !m.lagging_) {
            m.congested_ = true;
            m.congested_since_ = clock::now();
            congestion(+1);
        }
    } else if (bytes <= limit / 4) {
        m.lagging_ = false;
        if (m.congested_) {
            m.congested_ = false;
            congestion(-1);
        }
    }
}

void hub::congestion(int delta) {
    if (delta > 0) {
        if (congested_++ == 0) {
            // Closed: waiters wait until cancel(). Re-arming cancels nobody (there are no
            // waiters while nothing is congested).
            pace_gate_.expires_at(asio::steady_timer::time_point::max());
            arm_lag_timer(opts_.backpressure);
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

// A member that stayed over half its queue for `backpressure` no longer holds the sources: it
// is up to the slow-consumer policy whether it catches up, is cut off or misses frames.
void hub::on_lag_timer() {
    if (stopped_) return;
    const auto now = clock::now();
    const auto cutoff = now - opts_.backpressure;
    auto earliest = clock::time_point::max();
    for (auto& m : members_) {
        if (!m->congested_) continue;
        if (m->congested_since_ > cutoff) {
            earliest = std::min(earliest, m->congested_since_);
            continue;
        }
        m->congested_ = false;
        m->lagging_ = true;
        --congested_;
        ++counters_.backpressure_timeouts;
        spdlog::log(pace_waiters_ > 0 ? spdlog::level::warn : spdlog::level::debug,
                    "client {}: queue over half of the client buffer for {} ms; no longer "
                    "holding back the sources for it (backpressure)",
                    m->peer_, opts_.backpressure.count());
    }
    if (congested_ == 0) {
        pace_gate_.cancel();
    } else {
        arm_lag_timer(earliest + opts_.backpressure - now);
    }
}

void hub::when_ready(std::function<void()> fn) {
    if (congested_ == 0) {
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
    pace_gate_.cancel();
    lag_timer_.cancel();
}

}  // namespace framecast::io
