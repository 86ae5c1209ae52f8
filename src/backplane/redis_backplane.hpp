// The Redis backplane: a Redis Stream is the shared log. Appends are XADD with MAXLEN ~ N;
// every node reads with XREAD BLOCK from the last ID it delivered, so a node that loses Redis
// resumes where it stopped and misses nothing the stream still retains. Redis Streams, not
// pub/sub: pub/sub drops every message sent while a subscriber is disconnected.
//
// hiredis is used in blocking mode on two threads of our own (one reads, one appends): the
// read is a long-blocking XREAD, which would otherwise stall every append behind it.
#pragma once

#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "framecast/backplane.hpp"
#include "framecast/io/backoff.hpp"
#include "log_throttle.hpp"
#include "redis_address.hpp"
#include "redis_commands.hpp"
#include "redis_publishers.hpp"
#include "redis_replay.hpp"

namespace framecast::backplane::redis {

using clock = std::chrono::steady_clock;

// An error Redis gives while it cannot serve yet: loading its data after a restart, running a
// long script, a replica cut off from its primary. The command may succeed later, so it is kept
// and retried, not dropped. (BUSYKEY, BUSYGROUP: the error code is the first word.)
bool is_not_ready(const redisReply* r);

// The number after the dash of a stream ID: with offsets ("0-N"), the offset N.
std::uint64_t id_sequence(const std::string& id);

std::uint64_t now_millis();

// A candidate epoch, fresh for every use: a node that makes the stream again (after it was
// deleted) must not bring back the epoch it had proposed before.
std::string random_epoch();

struct pending_message {
    std::shared_ptr<const std::string> framed;
    std::uint64_t origin_client = 0;
    std::uint64_t seq = 0;
    std::size_t messages = 1;
    // Publish acks (redis_publishers.hpp): a publisher's unit, or (attach) its attach.
    std::shared_ptr<const publisher_unit> pub;
    bool attach = false;
};

// An entry as read, before it is delivered.
struct parsed_entry {
    message m;
    std::uint64_t seq = 0;
    std::string epoch;         // "e" (offsets)
    std::uint64_t millis = 0;  // "t" (offsets), else the ID's time
};

class redis_backplane final : public backplane {
public:
    // Construction, lifecycle, the public face (redis_backplane.cpp).
    redis_backplane(redis_address addr, options opts);
    ~redis_backplane() override;
    void start(deliver_fn deliver) override;
    void publish(std::shared_ptr<const std::string> framed, std::uint64_t origin_client,
                 std::size_t messages) override;
    void set_receipts(receipt_fn fn) override;
    void attach_publisher(std::uint64_t origin_client, std::string publisher,
                          std::uint64_t first) override;
    bool publish_numbered(std::shared_ptr<const std::string> framed, std::uint64_t origin_client,
                          std::size_t messages, publisher_unit unit) override;
    bool enqueue(pending_message m);
    void stop(double drain_seconds) override;
    stats snapshot() const override;
    const std::string& node_id() const override;
    std::string describe() const override;
    void read_history(const std::string& epoch, std::uint64_t from, std::size_t max_entries,
                      std::size_t max_bytes, std::function<void(history_range)> done) override;
    void reject() override;
    const std::atomic<std::uint64_t>* pending_bytes_counter() const override;

private:
    // What a loop's connection attempts have logged so far.
    struct connection_log {
        bool ever_connected = false;
        bool logged_down = false;  // "cannot connect" said once per outage, not per attempt
        bool logged_not_ready = false;  // "Redis is not ready" said once until it is
        bool logged_no_multi = false;   // "Redis refused MULTI" said once
    };

    // What one batch's transaction answered (read_transaction).
    struct batch_replies {
        // Per append: its own reply (refused while queued; every reply when MULTI was refused).
        std::vector<reply_ptr> own;
        reply_ptr exec;  // EXEC's reply; null when MULTI was refused
        // Append i's reply: its own, or its element of EXEC's when the transaction ran; null
        // when it did not run (another append's refusal aborted it).
        const redisReply* of(std::size_t i) const {
            if (own[i]) return own[i].get();
            if (exec && exec->type == REDIS_REPLY_ARRAY && i < exec->elements) {
                return exec->element[i];
            }
            return nullptr;
        }
        // Every append queued, yet EXEC refused: nothing ran, for a reason of EXEC's own.
        bool exec_refused() const {
            return exec && exec->type == REDIS_REPLY_ERROR &&
                   std::none_of(own.begin(), own.end(), [](const reply_ptr& r) { return !!r; });
        }
    };

    // Connections, AUTH, scripts, backoff (redis_connection.cpp).
    context_ptr connect(const char* role, connection_log& log);
    bool authenticate(redisContext* c, const char* role, connection_log& log);
    bool load_script(redisContext* c, const char* role, connection_log& log);
    void say_not_ready(connection_log& log, const redisReply* r, std::string_view then);
    io::backoff make_backoff() const;
    void wait_to_retry(io::backoff& delays);

    // The appending thread (redis_append.cpp).
    enum class append_result { done, not_ready, lost };
    void write_loop();
    bool next_append_batch(bool connected, std::vector<pending_message>& batch);
    append_result append(redisContext* c, const std::vector<pending_message>& batch,
                         connection_log& log);
    bool read_transaction(redisContext* c, std::size_t n, batch_replies& out,
                          connection_log& log);
    std::uint64_t retention_entries(const std::vector<pending_message>& batch);
    bool load_publisher_scripts(redisContext* c, const std::vector<pending_message>& batch,
                                connection_log& log);
    bool send_appends(redisContext* c, const std::vector<pending_message>& batch);
    std::string_view channel_of(const std::string& framed) const;
    bool send_numbered_appends(redisContext* c, const std::vector<pending_message>& batch,
                               std::uint64_t keep);
    bool send_publisher(redisContext* c, const pending_message& m, std::uint64_t keep,
                        const std::string& candidate);
    int answered_publisher(const redisReply* r, const pending_message& m);
    std::size_t pop_answered(std::size_t answered, const std::vector<bool>& retry);

    // Appends per round trip: the writer sends up to this many XADDs before reading their
    // replies (hiredis pipelining), so a burst costs one round trip per batch, not per message.
    static constexpr std::size_t append_batch = 64;

    // The reading thread (redis_read.cpp).
    bool position_at_end(context_ptr& c, connection_log& log, io::backoff& delays,
                         std::string& last_id);
    void read_loop();

    // Per node, the next sequence number is expected. One already seen is a retried append
    // (skipped). A jump ahead is delivered, logged and counted, but only adopted once the
    // node's next entry follows it: one forged entry with a huge number must not make every
    // later entry of that node look like a duplicate.
    struct node_sequence {
        std::uint64_t last = 0;
        std::uint64_t jumped_to = 0;
    };
    bool accept_sequence(const std::string& id, const std::string& node, std::uint64_t seq);
    static std::string io_safe(const std::string& s);
    bool parse_entry(const std::string& id, const redisReply* fields, parsed_entry& e);
    void deliver_entry(const std::string& id, parsed_entry e, message::kind what);

    // Offsets: the shared log's epoch and history (redis_epoch.cpp).
    bool check_epoch(context_ptr& c, connection_log& log, io::backoff& delays,
                     std::string& last_id);
    bool positioned_once();
    bool load_history(redisContext* c, const std::string& epoch, std::string& last);
    bool snapshot_channels(redisContext* c, const std::string& epoch, std::string& last,
                           std::vector<message>& channels);

    const redis_address addr_;
    const options opts_;
    const std::string node_id_;
    deliver_fn deliver_;
    std::thread reader_, writer_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<pending_message> pending_;  // guarded by mu_
    std::uint64_t pending_bytes_ = 0;      // guarded by mu_
    std::uint64_t next_seq_ = 1;           // guarded by mu_
    std::atomic<bool> stopping_{false};
    std::atomic<bool> given_up_{false};    // the reader stopped: fatal_ says why
    clock::time_point drain_deadline_{};   // guarded by mu_
    bool positioned_ = false;              // guarded by mu_: the reader knows where to start
    std::string fatal_;                    // guarded by mu_: offsets impossible (start() throws)

    std::unique_ptr<redis_replay> replay_;  // offsets: reads the past for resuming clients
    connection_log replay_log_;             // replay_'s thread only
    const std::string seen_key_;         // offsets: last sequence number per node
    const std::string channels_key_;     // channel offsets: each channel's last offset
    const std::string channel_use_key_;  // and when it was last used
    std::string append_sha_;             // writer thread only
    const redis_publishers::keys pub_keys_;
    redis_publishers::scripts pub_scripts_;  // writer thread only
    receipt_fn receipts_;                    // set before start()
    std::string init_sha_, epoch_;       // reader thread only
    io::log_throttle refuse_log_;        // reader thread only
    std::string refuse_more_;
    std::unordered_map<std::string, node_sequence> last_seq_;  // reader thread only
    io::log_throttle jump_log_;                                  // reader thread only
    std::string jump_more_;
    double average_entry_ = 0;                                   // writer thread only
    std::atomic<std::uint64_t> pending_bytes_shared_{0}, rejected_{0}, jumps_{0}, retried_{0},
        epoch_changes_{0}, history_loaded_{0}, publisher_duplicates_{0};
    std::atomic<std::uint64_t> published_{0}, delivered_{0}, dropped_{0}, duplicates_{0},
        reconnects_{0}, lag_ms_{0};
    std::atomic<bool> reader_up_{false}, writer_up_{false};
};

}  // namespace framecast::backplane::redis
