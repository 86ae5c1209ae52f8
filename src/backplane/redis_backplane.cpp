// The Redis backplane's public face (redis_backplane.hpp): construction, start and stop,
// publishing (queued for the appending thread), stats, and make_backplane().
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <utility>

#include "framecast/io/endpoint.hpp"
#include "redis_backplane.hpp"
#include "redis_offsets.hpp"

namespace framecast::backplane::redis {

namespace {

std::string make_node_id() {
    char host[64] = "node";
    gethostname(host, sizeof host - 1);
    std::random_device rd;
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%d-%08x", static_cast<int>(getpid()), rd());
    return std::string(host) + suffix;
}

}  // namespace

redis_backplane::redis_backplane(redis_address addr, options opts)
    : addr_(std::move(addr)), opts_(opts), node_id_(make_node_id()),
      seen_key_(redis_offsets::seen_key(addr_.key)),
      channels_key_(redis_offsets::channels_key(addr_.key)),
      channel_use_key_(redis_offsets::channel_use_key(addr_.key)), pub_keys_(addr_.key) {
    // spdlog creates its registry on first use; make that happen here, before our threads
    // exist, not in whichever of them logs first (a race ThreadSanitizer reports, since the
    // guard of that static lives in uninstrumented libspdlog).
    spdlog::default_logger_raw();
    if (opts_.offsets) {
        replay_ = std::make_unique<redis_replay>(addr_.key, describe(), [this] {
            return connect("replay", replay_log_);
        });
    }
}

redis_backplane::~redis_backplane() { stop(0); }

void redis_backplane::start(deliver_fn deliver) {
    deliver_ = std::move(deliver);
    reader_ = std::thread([this] { read_loop(); });
    writer_ = std::thread([this] { write_loop(); });
    // Wait (bounded) until the reader knows where the stream ends, so whatever is published
    // after start() returns reaches this node too. If Redis is down, carry on: the reader
    // keeps trying in the background.
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::duration<double>(opts_.start_timeout_seconds),
                      [this] { return positioned_ || !fatal_.empty(); })) {
        spdlog::warn("backplane {}: not reachable yet; serving local clients meanwhile",
                     describe());
    }
    if (!fatal_.empty()) {
        const std::string why = describe() + ": " + fatal_;
        lock.unlock();
        stop(0);
        throw std::runtime_error(why);
    }
}

void redis_backplane::publish(std::shared_ptr<const std::string> framed,
                              std::uint64_t origin_client, std::size_t messages) {
    enqueue({std::move(framed), origin_client, 0, std::max<std::size_t>(messages, 1), nullptr,
             false});
}

void redis_backplane::set_receipts(receipt_fn fn) { receipts_ = std::move(fn); }

// Not bounded by the pending limits: one per connection (bounded by the server's clients),
// and a publisher must hear its answer.
void redis_backplane::attach_publisher(std::uint64_t origin_client, std::string publisher,
                                       std::uint64_t first) {
    static const auto nothing = std::make_shared<const std::string>();
    pending_message m{nothing, origin_client, 0, 0,
                      std::make_shared<const publisher_unit>(
                          publisher_unit{std::move(publisher), first, 0, {}}),
                      true};
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(m));
    cv_.notify_all();
}

bool redis_backplane::publish_numbered(std::shared_ptr<const std::string> framed,
                                       std::uint64_t origin_client, std::size_t messages,
                                       publisher_unit unit) {
    return enqueue({std::move(framed), origin_client, 0, std::max<std::size_t>(messages, 1),
                    std::make_shared<const publisher_unit>(std::move(unit)), false});
}

// Queues an append, unless the pending queue is full (then false: dropped, counted).
// Publishers' units carry no node sequence number (0): their numbers dedup them.
bool redis_backplane::enqueue(pending_message m) {
    std::lock_guard lock(mu_);
    if (pending_.size() >= opts_.pending_limit ||
        (!pending_.empty() && pending_bytes_ + m.framed->size() > opts_.pending_bytes_limit)) {
        if (dropped_++ % 1000 == 0) {
            spdlog::warn("backplane {}: {} messages pending (Redis unreachable or slow): "
                         "dropping new ones, {} dropped so far",
                         describe(), pending_.size(), dropped_.load());
        }
        return false;
    }
    pending_bytes_ += m.framed->size();
    pending_bytes_shared_ = pending_bytes_;
    if (!m.pub) m.seq = next_seq_++;
    pending_.push_back(std::move(m));
    cv_.notify_all();
    return true;
}

void redis_backplane::stop(double drain_seconds) {
    {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        stopping_ = true;
        drain_deadline_ = clock::now() + std::chrono::duration_cast<clock::duration>(
                                             std::chrono::duration<double>(drain_seconds));
    }
    cv_.notify_all();
    if (replay_) replay_->stop();
    if (writer_.joinable()) writer_.join();
    if (reader_.joinable()) reader_.join();
}

stats redis_backplane::snapshot() const {
    stats s;
    s.published = published_;
    s.delivered = delivered_;
    s.dropped = dropped_;
    s.duplicates = duplicates_;
    s.rejected = rejected_;
    s.sequence_jumps = jumps_;
    s.retried = retried_;
    s.reconnects = reconnects_;
    s.epoch_changes = epoch_changes_;
    s.history_loaded = history_loaded_;
    s.publisher_duplicates = publisher_duplicates_;
    s.connected = reader_up_ && writer_up_;
    s.lag_seconds = lag_ms_ / 1000.0;
    std::lock_guard lock(mu_);
    s.pending = pending_.size();
    return s;
}

const std::string& redis_backplane::node_id() const { return node_id_; }

// Never shows the password.
std::string redis_backplane::describe() const {
    std::string auth;
    if (!addr_.password.empty()) auth = (addr_.user.empty() ? "" : addr_.user + ":") + "***@";
    return "redis://" + auth +
           io::format_host_port(addr_.host, static_cast<std::uint16_t>(addr_.port)) + "/" +
           addr_.key;
}

void redis_backplane::read_history(const std::string& epoch, std::uint64_t from,
                                   std::size_t max_entries, std::size_t max_bytes,
                                   std::function<void(history_range)> done) {
    if (!replay_) return backplane::read_history(epoch, from, max_entries, max_bytes, done);
    replay_->request(epoch, from, max_entries, max_bytes, std::move(done));
}

void redis_backplane::reject() { ++rejected_; }

const std::atomic<std::uint64_t>* redis_backplane::pending_bytes_counter() const {
    return &pending_bytes_shared_;
}

}  // namespace framecast::backplane::redis

namespace framecast::backplane {

std::unique_ptr<backplane> make_backplane(const std::string& url, options opts) {
    return std::make_unique<redis::redis_backplane>(redis::parse_redis_url(url), opts);
}

}  // namespace framecast::backplane
