// The Redis backplane: a Redis Stream is the shared log. Appends are XADD with MAXLEN ~ N;
// every node reads with XREAD BLOCK from the last ID it delivered, so a node that loses Redis
// resumes where it stopped and misses nothing the stream still retains. Redis Streams, not
// pub/sub: pub/sub drops every message sent while a subscriber is disconnected.
//
// hiredis is used in blocking mode on two threads of our own (one reads, one appends): the
// read is a long-blocking XREAD, which would otherwise stall every append behind it.
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <vector>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "framecast/backplane.hpp"
#include "framecast/io/backoff.hpp"
#include "framecast/codec.hpp"
#include "framecast/io/endpoint.hpp"
#include "framecast/io/protocol_words.hpp"
#include "log_throttle.hpp"
#include "redis_commands.hpp"
#include "redis_address.hpp"
#include "redis_offsets.hpp"
#include "redis_publishers.hpp"
#include "redis_replay.hpp"

namespace framecast::backplane {
namespace {

using clock = std::chrono::steady_clock;

using redis::command;
using redis::context_ptr;
using redis::reply_ptr;
using redis::reply_text;
using redis::redis_address;
using redis::parse_redis_url;

// An error Redis gives while it cannot serve yet: loading its data after a restart, running a
// long script, a replica cut off from its primary. The command may succeed later, so it is kept
// and retried, not dropped. (BUSYKEY, BUSYGROUP: the error code is the first word.)
bool is_not_ready(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ERROR || r->str == nullptr) return false;
    const std::string_view text(r->str, r->len);
    const std::string_view code = text.substr(0, text.find(' '));
    return code == "LOADING" || code == "BUSY" || code == "TRYAGAIN" || code == "MASTERDOWN";
}

std::string make_node_id() {
    char host[64] = "node";
    gethostname(host, sizeof host - 1);
    std::random_device rd;
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%d-%08x", static_cast<int>(getpid()), rd());
    return std::string(host) + suffix;
}

// Milliseconds part of a stream ID "1700000000000-3".
std::uint64_t id_millis(const std::string& id) {
    return std::strtoull(id.c_str(), nullptr, 10);
}

// The number after the dash of a stream ID: with offsets ("0-N"), the offset N.
std::uint64_t id_sequence(const std::string& id) {
    const auto dash = id.find('-');
    return dash == std::string::npos ? 0 : std::strtoull(id.c_str() + dash + 1, nullptr, 10);
}

std::uint64_t now_millis() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch()).count());
}

// A candidate epoch, fresh for every use: a node that makes the stream again (after it was
// deleted) must not bring back the epoch it had proposed before.
std::string random_epoch() {
    thread_local std::mt19937_64 engine{(static_cast<std::uint64_t>(std::random_device{}()) << 32) ^
                                        std::random_device{}()};
    char out[20];
    std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(engine()));
    return out;
}

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
    redis_backplane(redis_address addr, options opts)
        : addr_(std::move(addr)), opts_(opts), node_id_(make_node_id()),
          seen_key_(redis_offsets::seen_key(addr_.key)), pub_keys_(addr_.key) {
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

    ~redis_backplane() override { stop(0); }

    void start(deliver_fn deliver) override {
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

    void publish(std::shared_ptr<const std::string> framed, std::uint64_t origin_client,
                 std::size_t messages) override {
        enqueue({std::move(framed), origin_client, 0, std::max<std::size_t>(messages, 1), nullptr,
                 false});
    }

    void set_receipts(receipt_fn fn) override { receipts_ = std::move(fn); }

    // Not bounded by the pending limits: one per connection (bounded by the server's clients),
    // and a publisher must hear its answer.
    void attach_publisher(std::uint64_t origin_client, std::string publisher,
                          std::uint64_t first) override {
        static const auto nothing = std::make_shared<const std::string>();
        pending_message m{nothing, origin_client, 0, 0,
                          std::make_shared<const publisher_unit>(
                              publisher_unit{std::move(publisher), first, 0, {}}),
                          true};
        std::lock_guard lock(mu_);
        pending_.push_back(std::move(m));
        cv_.notify_all();
    }

    bool publish_numbered(std::shared_ptr<const std::string> framed, std::uint64_t origin_client,
                          std::size_t messages, publisher_unit unit) override {
        return enqueue({std::move(framed), origin_client, 0, std::max<std::size_t>(messages, 1),
                        std::make_shared<const publisher_unit>(std::move(unit)), false});
    }

    // Queues an append, unless the pending queue is full (then false: dropped, counted).
    // Publishers' units carry no node sequence number (0): their numbers dedup them.
    bool enqueue(pending_message m) {
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

    void stop(double drain_seconds) override {
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

    stats snapshot() const override {
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

    const std::string& node_id() const override { return node_id_; }

    // Never shows the password.
    std::string describe() const override {
        std::string auth;
        if (!addr_.password.empty()) auth = (addr_.user.empty() ? "" : addr_.user + ":") + "***@";
        return "redis://" + auth +
               io::format_host_port(addr_.host, static_cast<std::uint16_t>(addr_.port)) + "/" +
               addr_.key;
    }

    void read_history(const std::string& epoch, std::uint64_t from, std::size_t max_entries,
                      std::size_t max_bytes, std::function<void(history_range)> done) override {
        if (!replay_) return backplane::read_history(epoch, from, max_entries, max_bytes, done);
        replay_->request(epoch, from, max_entries, max_bytes, std::move(done));
    }

    void reject() override { ++rejected_; }
    const std::atomic<std::uint64_t>* pending_bytes_counter() const override {
        return &pending_bytes_shared_;
    }

private:
    // What a loop's connection attempts have logged so far.
    struct connection_log {
        bool ever_connected = false;
        bool logged_down = false;  // "cannot connect" said once per outage, not per attempt
        bool logged_not_ready = false;  // "Redis is not ready" said once until it is
    };

    // Connects, or returns null after logging why. `role` names the thread in logs.
    context_ptr connect(const char* role, connection_log& log) {
        timeval connect_timeout{2, 0};
        context_ptr c(redisConnectWithTimeout(addr_.host.c_str(), addr_.port, connect_timeout));
        if (!c || c->err) {
            if (!log.logged_down) {
                spdlog::warn("backplane {} ({}): cannot connect: {}; retrying with backoff",
                             describe(), role, c ? c->errstr : "out of memory");
                log.logged_down = true;
            }
            return nullptr;
        }
        // Bound every reply wait: a read blocks at most block_seconds on the server side.
        auto io = std::chrono::duration<double>(opts_.block_seconds + 5.0);
        timeval io_timeout{static_cast<time_t>(io.count()), 0};
        redisSetTimeout(c.get(), io_timeout);
        if (!addr_.password.empty() && !authenticate(c.get(), role, log)) return nullptr;
        const bool scripts = opts_.offsets && std::string_view(role) != "replay";  // reads only
        if (scripts && !load_script(c.get(), role, log)) return nullptr;
        if (log.ever_connected) {
            ++reconnects_;
            spdlog::info("backplane {} ({}): reconnected", describe(), role);
        } else {
            spdlog::info("backplane {} ({}): connected as node {}", describe(), role, node_id_);
        }
        log.ever_connected = true;
        log.logged_down = false;
        return c;
    }

    // AUTH [user] password; false (logged once per outage) when refused.
    bool authenticate(redisContext* c, const char* role, connection_log& log) {
        reply_ptr r = addr_.user.empty()
                          ? command(c, "AUTH %b", addr_.password.data(), addr_.password.size())
                          : command(c, "AUTH %b %b", addr_.user.data(), addr_.user.size(),
                                    addr_.password.data(), addr_.password.size());
        if (r && r->type != REDIS_REPLY_ERROR) return true;
        if (!log.logged_down) {
            spdlog::error("backplane {} ({}): authentication failed: {}; retrying with backoff",
                          describe(), role, r ? reply_text(r.get()) : c->errstr);
            log.logged_down = true;
        }
        return false;
    }

    // SCRIPT LOAD of the offsets' scripts on every connection (a restarted Redis has none).
    bool load_script(redisContext* c, const char* role, connection_log& log) {
        const bool append = std::string_view(role) == "append";
        const std::string& body = append ? redis_offsets::append_script : redis_offsets::init_script;
        reply_ptr r = command(c, "SCRIPT LOAD %s", body.c_str());
        if (r && r->type == REDIS_REPLY_STRING) {
            (append ? append_sha_ : init_sha_) = reply_text(r.get());
            return true;
        }
        if (!log.logged_down) {
            spdlog::error("backplane {} ({}): cannot load the offsets script: {}; retrying with "
                          "backoff", describe(), role, r ? reply_text(r.get()) : c->errstr);
            log.logged_down = true;
        }
        return false;
    }

    // "Redis is not ready" (is_not_ready), once until it is: what waits meanwhile is `then`.
    void say_not_ready(connection_log& log, const redisReply* r, std::string_view then) {
        if (log.logged_not_ready) return;
        spdlog::warn("backplane {}: Redis is not ready: {}; {}", describe(), reply_text(r), then);
        log.logged_not_ready = true;
    }

    // How long each loop waits before its next connection attempt (one per thread).
    io::backoff make_backoff() const {
        return io::backoff({.min = std::chrono::milliseconds(100),
                            .max = std::chrono::duration_cast<io::backoff::duration>(
                                std::chrono::duration<double>(opts_.max_backoff_seconds))});
    }

    // Sleeps for the next backoff step, waking early on stop().
    void wait_to_retry(io::backoff& delays) {
        const auto d = delays.next();
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, d, [this] { return stopping_.load(); });
    }

    // Appends per round trip: the writer sends up to this many XADDs before reading their
    // replies (hiredis pipelining), so a burst costs one round trip per batch, not per message.
    static constexpr std::size_t append_batch = 64;

    // The appending thread: takes up to append_batch pending messages, appends them in one
    // round trip, and pops the ones Redis answered; reconnects (with backoff) when Redis is lost.
    // Ends once all is appended after stop(), or when the drain deadline passes.
    void write_loop() {
        context_ptr c;
        connection_log log;
        auto delays = make_backoff();
        std::vector<pending_message> batch;
        batch.reserve(append_batch);
        while (next_append_batch(c != nullptr, batch)) {
            if (!c) {
                c = connect("append", log);
                writer_up_ = c != nullptr;
                pub_scripts_ = {};  // loaded when a publisher's item first needs them
                if (!c) {
                    wait_to_retry(delays);
                    continue;
                }
                delays.reset();
            }
            if (batch.empty()) continue;
            switch (append(c.get(), batch, log)) {
            case append_result::done:
                delays.reset();
                break;
            case append_result::not_ready:
                wait_to_retry(delays);  // connected, but Redis asked us to come back later
                break;
            case append_result::lost:
                spdlog::warn("backplane {}: lost Redis while appending: {}", describe(), c->errstr);
                c.reset();
                writer_up_ = false;
                break;
            }
        }
    }

    // Fills `batch` with the oldest pending messages (they stay pending until appended, so a
    // failure retries them). Connected, waits for work first; not connected, returns at once
    // (connect first, so the metrics' "up" reflects both directions even on a node that has
    // published nothing yet). False when the writer is done: all appended after stop(), or the
    // drain deadline passed (what is left is dropped, logged and counted).
    bool next_append_batch(bool connected, std::vector<pending_message>& batch) {
        batch.clear();
        std::unique_lock lock(mu_);
        if (connected) cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        if (pending_.empty() && stopping_) return false;
        if (stopping_ && clock::now() >= drain_deadline_) {
            spdlog::warn("backplane {}: stopping with {} messages not appended", describe(),
                         pending_.size());
            dropped_ += pending_.size();
            pending_.clear();
            pending_bytes_ = 0;
            pending_bytes_shared_ = 0;
            return false;
        }
        // Only this thread pops.
        for (std::size_t i = 0; i < pending_.size() && i < append_batch; ++i) {
            batch.push_back(pending_[i]);
        }
        return true;
    }

    enum class append_result { done, not_ready, lost };

    // Appends `batch` in one round trip (XADDs pipelined, then their replies) and pops what
    // Redis answered. An append refused as "not yet" (is_not_ready: Redis loading its data
    // after a restart) stays pending, at the front, and is retried after a backoff step; one
    // refused for good (a wrong key type, say) is dropped, logged and counted. The connection
    // lost: the unanswered rest stays pending.
    append_result append(redisContext* c, const std::vector<pending_message>& batch,
                         connection_log& log) {
        if (!load_publisher_scripts(c, batch, log)) {
            return c->err ? append_result::lost : append_result::not_ready;
        }
        if (!send_appends(c, batch)) return append_result::lost;
        std::size_t answered = 0, appended = 0, refused = 0;
        std::vector<bool> retry(batch.size(), false);
        bool lost = false, not_ready = false;
        for (; answered < batch.size(); ++answered) {
            void* raw = nullptr;
            if (redisGetReply(c, &raw) != REDIS_OK || raw == nullptr) {
                lost = true;
                break;
            }
            reply_ptr r(static_cast<redisReply*>(raw));
            if (r->type == REDIS_REPLY_ERROR && reply_text(r.get()).starts_with("NOSCRIPT")) {
                lost = true;  // flushed scripts: reconnect, which loads it again
                break;
            }
            if (is_not_ready(r.get())) {
                retry[answered] = not_ready = true;
                say_not_ready(log, r.get(), "appends wait and are retried with backoff");
            } else if (batch[answered].pub) {
                const int outcome = answered_publisher(r.get(), batch[answered]);
                appended += outcome > 0;
                refused += outcome < 0;
            } else if (r->type == REDIS_REPLY_ERROR) {
                spdlog::error("backplane {}: Redis refused an append: {}; message dropped",
                              describe(), reply_text(r.get()));
                ++refused;
            } else {
                if (reply_text(r.get()) == "dup") ++duplicates_;  // a retry that had landed
                ++appended;
            }
        }
        published_ += appended;
        dropped_ += refused;
        const std::size_t kept = pop_answered(answered, retry);
        retried_ += kept;
        if (lost) return append_result::lost;
        if (not_ready) return append_result::not_ready;
        if (log.logged_not_ready) {
            spdlog::info("backplane {}: Redis is ready again; appending", describe());
            log.logged_not_ready = false;
        }
        return append_result::done;
    }

    // Entries to keep: the retention, or fewer when that many entries of the average size
    // seen so far (this node's appends) would pass retention_bytes.
    std::uint64_t retention_entries(const std::vector<pending_message>& batch) {
        for (const auto& m : batch) {
            if (m.attach) continue;
            const double size = static_cast<double>(m.framed->size() + 64);  // + fields, ids
            average_entry_ = average_entry_ == 0 ? size : 0.99 * average_entry_ + 0.01 * size;
        }
        std::uint64_t n = opts_.retention;
        if (opts_.retention_bytes != 0 && average_entry_ > 0) {
            const auto by_bytes =
                static_cast<std::uint64_t>(static_cast<double>(opts_.retention_bytes) / average_entry_);
            n = std::min(n, std::max<std::uint64_t>(by_bytes, 1));
        }
        return n;
    }

    // The publishers' scripts, loaded on a connection's first batch that needs them; false
    // (logged once per outage: the batch waits a backoff step) when Redis refused.
    bool load_publisher_scripts(redisContext* c, const std::vector<pending_message>& batch,
                                connection_log& log) {
        if (!pub_scripts_.append_sha.empty() ||
            std::none_of(batch.begin(), batch.end(), [](const auto& m) { return m.pub != nullptr; })) {
            return true;
        }
        std::string problem;
        if (redis_publishers::load(c, pub_scripts_, problem)) return true;
        if (!log.logged_not_ready) {
            spdlog::warn("backplane {}: cannot load the publishers' scripts: {}; retrying with "
                         "backoff", describe(), problem);
            log.logged_not_ready = true;
        }
        return false;
    }

    bool send_appends(redisContext* c, const std::vector<pending_message>& batch) {
        const std::uint64_t keep = retention_entries(batch);
        if (opts_.offsets) return send_numbered_appends(c, batch, keep);
        for (const auto& m : batch) {
            if (m.pub) {
                if (!send_publisher(c, m, keep, {})) return false;
                continue;
            }
            if (redisAppendCommand(c, "XADD %b MAXLEN ~ %llu * n %b s %llu c %llu f %b",
                                   addr_.key.data(), addr_.key.size(),
                                   static_cast<unsigned long long>(keep),
                                   node_id_.data(), node_id_.size(),
                                   static_cast<unsigned long long>(m.seq),
                                   static_cast<unsigned long long>(m.origin_client),
                                   m.framed->data(), m.framed->size()) != REDIS_OK) {
                return false;
            }
        }
        return true;
    }

    // With offsets: the append script (redis_offsets.hpp) numbers each entry.
    bool send_numbered_appends(redisContext* c, const std::vector<pending_message>& batch,
                               std::uint64_t keep) {
        const auto t = static_cast<unsigned long long>(now_millis());
        const std::string candidate = random_epoch();
        for (const auto& m : batch) {
            if (m.pub) {
                if (!send_publisher(c, m, keep, candidate)) return false;
                continue;
            }
            const auto seq = static_cast<unsigned long long>(m.seq);
            if (redisAppendCommand(
                    c, "EVALSHA %s 2 %b %b %llu %s %llu %b %llu n %b s %llu c %llu t %llu f %b",
                    append_sha_.c_str(), addr_.key.data(), addr_.key.size(), seen_key_.data(),
                    seen_key_.size(), static_cast<unsigned long long>(keep),
                    candidate.c_str(), static_cast<unsigned long long>(m.messages),
                    node_id_.data(), node_id_.size(), seq, node_id_.data(), node_id_.size(), seq,
                    static_cast<unsigned long long>(m.origin_client), t, m.framed->data(),
                    m.framed->size()) != REDIS_OK) {
                return false;
            }
        }
        return true;
    }

    // A publisher's attach or unit (redis_publishers.hpp), pipelined with the others.
    bool send_publisher(redisContext* c, const pending_message& m, std::uint64_t keep,
                        const std::string& candidate) {
        if (m.attach) {
            return redis_publishers::send_attach(c, pub_scripts_, pub_keys_, m.pub->publisher,
                                                 m.pub->first, opts_);
        }
        const redis_publishers::append_args a{addr_.key, seen_key_, pub_keys_, keep, candidate,
                                              opts_.offsets, node_id_, m.origin_client,
                                              now_millis(), opts_};
        return redis_publishers::send_append(c, pub_scripts_, a, *m.framed, m.messages, *m.pub);
    }

    // Its reply, as a receipt for the node: 1 when an entry was appended, -1 when the unit
    // was not appended for good (an error, a gap: counted as dropped, as a refused append).
    int answered_publisher(const redisReply* r, const pending_message& m) {
        publisher_receipt receipt;
        if (r->type == REDIS_REPLY_ERROR) {
            spdlog::error("backplane {}: Redis refused a publisher's {}: {}", describe(),
                          m.attach ? "attach" : "append", reply_text(r));
            receipt.what = publisher_receipt::kind::failed;
            receipt.origin_client = m.origin_client;
            receipt.why = "the shared log refused it: " + reply_text(r);
        } else {
            receipt = redis_publishers::receipt_of(r, m.origin_client, m.attach ? nullptr : m.pub.get());
        }
        receipt.messages = m.messages;
        publisher_duplicates_ += receipt.duplicates;
        const int outcome = receipt.entry ? 1
                            : receipt.what == publisher_receipt::kind::failed && !m.attach ? -1
                                                                                       : 0;
        if (receipts_) receipts_(std::move(receipt));
        return outcome;
    }

    // The answered ones are done, except those marked in `retry` (Redis said "not yet"): they
    // stay at the front, in order, with the unanswered rest (retried after a reconnect: an
    // append may have landed without its reply, and readers skip a (node, seq) they have seen).
    // Returns how many were kept for retry.
    std::size_t pop_answered(std::size_t answered, const std::vector<bool>& retry) {
        std::lock_guard lock(mu_);
        std::vector<pending_message> kept;
        for (std::size_t i = 0; i < answered; ++i) {
            if (retry[i]) {
                kept.push_back(std::move(pending_.front()));
            } else {
                pending_bytes_ -= pending_.front().framed->size();
            }
            pending_.pop_front();
        }
        pending_.insert(pending_.begin(), std::make_move_iterator(kept.begin()),
                        std::make_move_iterator(kept.end()));
        pending_bytes_shared_ = pending_bytes_;
        return kept.size();
    }

    // Finds where this node starts reading: after the stream's newest entry. False (after a
    // backoff step; `c` reset when the connection was lost) when Redis could not say.
    bool position_at_end(context_ptr& c, connection_log& log, io::backoff& delays,
                         std::string& last_id) {
        auto r = command(c.get(), "XREVRANGE %b + - COUNT 1", addr_.key.data(), addr_.key.size());
        if (r && r->type == REDIS_REPLY_ARRAY) {
            last_id = r->elements > 0 ? reply_text(r->element[0]->element[0]) : "0-0";
            std::lock_guard lock(mu_);
            positioned_ = true;
            cv_.notify_all();
            return true;
        }
        if (is_not_ready(r.get())) {
            say_not_ready(log, r.get(), "reading starts once it is");
        } else {
            spdlog::warn("backplane {}: cannot read the stream's end: {}", describe(),
                         r ? reply_text(r.get()) : c->errstr);
            if (!r) {
                c.reset();
                reader_up_ = false;
            }
        }
        wait_to_retry(delays);
        return false;
    }

    void read_loop() {
        context_ptr c;
        connection_log log;
        auto delays = make_backoff();
        std::string last_id;  // empty until the starting position is known
        // Offsets: the log's epoch is checked on every (re)connection and whenever a read
        // waited in vain (a deleted stream sends nothing), and on an entry of another epoch.
        bool epoch_checked = false;
        std::string suspect;  // an entry of another epoch while the epoch had not changed
        const int block_ms = std::max(1, static_cast<int>(opts_.block_seconds * 1000));
        while (!stopping_ && !given_up_) {
            if (!c) {
                c = connect("read", log);
                reader_up_ = c != nullptr;
                if (!c) {
                    wait_to_retry(delays);
                    continue;
                }
                delays.reset();
            }
            if (opts_.offsets) {
                if (!epoch_checked && !check_epoch(c, log, delays, last_id)) continue;
                epoch_checked = true;
            } else if (last_id.empty() && !position_at_end(c, log, delays, last_id)) {
                continue;
            }
            auto r = command(c.get(), "XREAD COUNT 1024 BLOCK %d STREAMS %b %s", block_ms,
                             addr_.key.data(), addr_.key.size(), last_id.c_str());
            if (!r) {
                spdlog::warn("backplane {}: lost Redis while reading: {}; resuming after {} once "
                             "back", describe(), c->errstr, last_id);
                c.reset();
                reader_up_ = false;
                epoch_checked = false;
                continue;
            }
            if (is_not_ready(r.get())) {
                say_not_ready(log, r.get(), "reading resumes after " + last_id + " once it is");
                wait_to_retry(delays);
                continue;
            }
            if (r->type == REDIS_REPLY_ERROR) {
                spdlog::error("backplane {}: Redis refused a read: {}", describe(), reply_text(r.get()));
                c.reset();
                epoch_checked = false;
                wait_to_retry(delays);
                continue;
            }
            log.logged_not_ready = false;
            delays.reset();
            if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {  // BLOCK timed out
                epoch_checked = false;
                continue;
            }
            const redisReply* entries = r->element[0]->element[1];
            for (std::size_t i = 0; i < entries->elements; ++i) {
                const redisReply* entry = entries->element[i];
                const std::string id = reply_text(entry->element[0]);
                parsed_entry e;
                if (!parse_entry(id, entry->element[1], e)) {
                    last_id = id;
                    continue;
                }
                if (opts_.offsets && e.epoch != epoch_ && id != suspect) {
                    // The stream was deleted and made again (or the entry is forged): check
                    // the epoch before going on; this entry is read again either way.
                    suspect = id;
                    epoch_checked = false;
                    break;
                }
                last_id = id;
                if (opts_.offsets && e.epoch != epoch_) {
                    ++rejected_;
                    spdlog::warn("backplane {}: entry {} claims epoch '{}', the stream's is {}; "
                                 "skipped", describe(), id, io_safe(e.epoch), epoch_);
                    continue;
                }
                deliver_entry(id, std::move(e), message::kind::live);
            }
        }
    }

    // Per node, the next sequence number is expected. One already seen is a retried append
    // (skipped). A jump ahead is delivered, logged and counted, but only adopted once the
    // node's next entry follows it: one forged entry with a huge number must not make every
    // later entry of that node look like a duplicate.
    struct node_sequence {
        std::uint64_t last = 0;
        std::uint64_t jumped_to = 0;
    };

    bool accept_sequence(const std::string& id, const std::string& node, std::uint64_t seq) {
        if (seq == 0) return true;  // an entry without a sequence number: nothing to check
        auto& s = last_seq_[node];
        if ((s.last != 0 && seq <= s.last) || seq == s.jumped_to) {
            ++duplicates_;
            return false;
        }
        if (seq == s.last + 1 || (s.jumped_to != 0 && seq == s.jumped_to + 1)) {
            s.last = seq;
            s.jumped_to = 0;
            return true;
        }
        // The first entry seen from a node (we joined mid-stream) is not adopted either: it
        // may be forged. Only a jump from a known position is logged and counted.
        if (s.last != 0) {
            ++jumps_;
            if (jump_log_.allow(jump_more_)) {
                spdlog::warn("backplane {}: entry {} of node {} has sequence number {}, expected "
                             "{}; delivered, not adopted until the node's next entry follows "
                             "it{}",
                             describe(), id, io_safe(node), seq, s.last + 1, jump_more_);
            }
        }
        s.jumped_to = seq;
        return true;
    }

    static std::string io_safe(const std::string& s) { return framecast::escape_controls(s, true); }

    // False (logged) when the entry cannot be delivered: no payload, or (offsets) an ID that
    // is not an offset.
    bool parse_entry(const std::string& id, const redisReply* fields, parsed_entry& e) {
        if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
        for (std::size_t k = 0; k + 1 < fields->elements; k += 2) {
            std::string name = reply_text(fields->element[k]);
            const redisReply* v = fields->element[k + 1];
            if (name == "f") {
                e.m.framed = std::make_shared<const std::string>(v->str, v->len);
            } else if (name == "n") {
                e.m.origin_node = reply_text(v);
            } else if (name == "s") {
                e.seq = std::strtoull(reply_text(v).c_str(), nullptr, 10);
            } else if (name == "c") {
                e.m.origin_client = std::strtoull(reply_text(v).c_str(), nullptr, 10);
            } else if (name == "e") {
                e.epoch = reply_text(v);
            } else if (name == "t") {
                e.millis = std::strtoull(reply_text(v).c_str(), nullptr, 10);
            }
        }
        if (!e.m.framed) {
            spdlog::warn("backplane {}: entry {} has no payload field; skipped", describe(), id);
            return false;
        }
        if (!opts_.offsets) {
            e.millis = id_millis(id);
            return true;
        }
        e.m.offset = id_sequence(id);
        if (id_millis(id) != 0 || e.m.offset == 0) {
            ++rejected_;
            spdlog::warn("backplane {}: entry {} is not numbered by serve --resume; skipped",
                         describe(), id);
            return false;
        }
        return true;
    }

    void deliver_entry(const std::string& id, parsed_entry e, message::kind what) {
        if (!accept_sequence(id, e.m.origin_node, e.seq)) return;
        const auto now_ms = now_millis();
        lag_ms_ = now_ms > e.millis ? now_ms - e.millis : 0;
        e.m.what = what;
        if (what == message::kind::live) ++delivered_;
        deliver_(std::move(e.m));
    }

    // Offsets: runs the init script (redis_offsets.hpp), which makes the stream and its epoch
    // when there is none. The first time, delivers the epoch and the log's recent entries
    // (load_history) and starts reading after them; when the epoch changed since (the stream
    // was deleted: its history is lost), says so and reads the new stream from its start.
    // False (after a backoff step; `c` reset when the connection was lost) when Redis could
    // not say; at start, a key that cannot be numbered is fatal (start() throws).
    bool check_epoch(context_ptr& c, connection_log& log, io::backoff& delays,
                     std::string& last_id) {
        auto r = command(c.get(), "EVALSHA %s 2 %b %b %s", init_sha_.c_str(), addr_.key.data(),
                         addr_.key.size(), seen_key_.data(), seen_key_.size(),
                         random_epoch().c_str());
        std::string problem;
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            const std::string epoch = reply_text(r->element[0]);
            const std::string last = reply_text(r->element[1]);
            if (epoch == epoch_) return true;
            // An epoch as clients will see it (docs/resume.md). Redis is not trusted: a group
            // name that is not one is refused.
            if (!io::is_protocol_token(epoch)) {
                problem = "the stream's epoch group names '" + io_safe(epoch) +
                          "', not 1-64 of [A-Za-z0-9_-]";
            } else if (epoch_.empty()) {
                if (load_history(c.get(), epoch, last)) {
                    last_id = last;
                    std::lock_guard lock(mu_);
                    positioned_ = true;
                    cv_.notify_all();
                    return true;
                }
                problem = std::string("cannot read the stream's recent entries: ") +
                          (c->err ? c->errstr : "an unexpected reply");
            } else {
                ++epoch_changes_;
                spdlog::warn("backplane {}: the stream's history was lost (deleted, or Redis "
                             "restarted without persistence): epoch {} is now {}",
                             describe(), epoch_, epoch);
                epoch_ = epoch;
                last_id = "0-0";
                message m;
                m.what = message::kind::epoch;
                m.epoch = epoch;
                m.offset = 1;
                deliver_(std::move(m));
                return true;
            }
        } else if (r && r->type == REDIS_REPLY_ERROR && reply_text(r.get()).starts_with("FCREFUSE")) {
            problem = reply_text(r.get()).substr(9);
            if (!positioned_once()) {
                std::lock_guard lock(mu_);
                fatal_ = problem;
                given_up_ = true;  // start() says why and stops
                cv_.notify_all();
                return false;
            }
        } else if (is_not_ready(r.get())) {
            say_not_ready(log, r.get(), "reading starts once it is");
        } else {
            problem = r ? reply_text(r.get()) : c->errstr;
            if (!r || reply_text(r.get()).starts_with("NOSCRIPT")) c.reset();
            if (!r) reader_up_ = false;
        }
        if (!problem.empty() && refuse_log_.allow(refuse_more_)) {
            spdlog::error("backplane {}: cannot number the stream: {}; retrying with backoff{}",
                          describe(), problem, refuse_more_);
        }
        wait_to_retry(delays);
        return false;
    }

    bool positioned_once() {
        std::lock_guard lock(mu_);
        return positioned_;
    }

    // Offsets, at start: the stream's most recent entries up to `last` (up to
    // history_messages entries, or history_bytes), read newest first in bounded pieces, then
    // delivered oldest first as kind::history after the kind::epoch notice, so this node can
    // serve resumes from before it started (a restarted node sees no false gap).
    bool load_history(redisContext* c, const std::string& epoch, const std::string& last) {
        std::vector<std::pair<std::string, parsed_entry>> tail;
        std::uint64_t bytes = 0;
        std::string end = last;
        while (last != "0-0" && tail.size() < opts_.history_messages &&
               bytes < opts_.history_bytes) {
            auto r = command(c, "XREVRANGE %b %s - COUNT %d", addr_.key.data(), addr_.key.size(),
                             end.c_str(), 128);
            if (!r || r->type != REDIS_REPLY_ARRAY) return false;
            if (r->elements == 0) break;
            for (std::size_t i = 0; i < r->elements; ++i) {
                const redisReply* entry = r->element[i];
                end = "(" + reply_text(entry->element[0]);
                parsed_entry e;
                if (!parse_entry(end.substr(1), entry->element[1], e) || e.epoch != epoch) continue;
                bytes += e.m.framed->size();
                tail.emplace_back(end.substr(1), std::move(e));
            }
        }
        epoch_ = epoch;
        message notice;
        notice.what = message::kind::epoch;
        notice.epoch = epoch;
        notice.offset = tail.empty() ? id_sequence(last) + 1 : tail.back().second.m.offset;
        notice.history_follows = !tail.empty();
        deliver_(std::move(notice));
        for (auto it = tail.rbegin(); it != tail.rend(); ++it) {
            ++history_loaded_;
            deliver_entry(it->first, std::move(it->second), message::kind::history);
        }
        if (!tail.empty()) {  // the history is all there: resume requests can be answered
            message done;
            done.what = message::kind::epoch;
            done.epoch = epoch;
            deliver_(std::move(done));
        }
        spdlog::info("backplane {}: epoch {}, {} recent entries read for resuming clients, next "
                     "offset after {}", describe(), epoch, tail.size(), last);
        return true;
    }

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

}  // namespace

std::unique_ptr<backplane> make_backplane(const std::string& url, options opts) {
    return std::make_unique<redis_backplane>(parse_redis_url(url), opts);
}

}  // namespace framecast::backplane
