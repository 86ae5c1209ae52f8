#include "redis_replay.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

namespace framecast::backplane {

namespace {

using redis::command;
using redis::reply_text;

// After a failed connection, requests are answered "failed" at once for this long: a burst of
// resuming clients while Redis is down must not each wait for a connect timeout.
constexpr std::chrono::seconds connect_pause{1};

// Entries per XRANGE at most: the replies are bounded in bytes by asking few entries at a time
// (about max_bytes' worth, from the sizes seen so far in this piece).
constexpr std::size_t range_count = 64;

// One entry of a numbered stream (ID "0-N"): its offset, epoch and frames; false when it is
// not one (time-based ID, no payload).
bool parse(const redisReply* entry, message& m, std::string& epoch) {
    if (entry == nullptr || entry->type != REDIS_REPLY_ARRAY || entry->elements < 2) return false;
    const std::string id = reply_text(entry->element[0]);
    if (!id.starts_with("0-")) return false;
    m.offset = std::strtoull(id.c_str() + 2, nullptr, 10);
    const redisReply* fields = entry->element[1];
    if (m.offset == 0 || fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
    for (std::size_t k = 0; k + 1 < fields->elements; k += 2) {
        const std::string name = reply_text(fields->element[k]);
        const redisReply* v = fields->element[k + 1];
        if (name == "f" && v->str) {
            m.framed = std::make_shared<const std::string>(v->str, v->len);
        } else if (name == "e") {
            epoch = reply_text(v);
        } else if (name == "n") {
            m.origin_node = reply_text(v);
        } else if (name == "k") {  // channels: the reader checks it against the offset
            m.channel_offset = std::strtoull(reply_text(v).c_str(), nullptr, 10);
        }
    }
    m.what = message::kind::history;
    return m.framed != nullptr;
}

}  // namespace

redis_replay::redis_replay(std::string key, std::string describe,
                           std::function<redis::context_ptr()> connect)
    : key_(std::move(key)), describe_(std::move(describe)), connect_(std::move(connect)) {}

redis_replay::~redis_replay() { stop(); }

void redis_replay::request(std::string epoch, std::uint64_t from, std::size_t max_entries,
                           std::size_t max_bytes, std::function<void(history_range)> done) {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    jobs_.push_back({std::move(epoch), from, std::max<std::size_t>(max_entries, 1), max_bytes,
                     std::move(done)});
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    cv_.notify_one();
}

void redis_replay::stop() {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        jobs_.clear();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void redis_replay::loop() {
    for (;;) {
        job j;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
            if (stopping_) return;
            j = std::move(jobs_.front());
            jobs_.pop_front();
        }
        j.done(serve(j));
    }
}

// One request: (re)connects when needed; a connection lost mid-read is tried once more on a
// fresh one, then answered "failed" (the server falls back to what it holds: a gap).
history_range redis_replay::serve(const job& j) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (!conn_) {
            if (std::chrono::steady_clock::now() < retry_at_) break;
            conn_ = connect_();
            if (!conn_) {
                retry_at_ = std::chrono::steady_clock::now() + connect_pause;
                break;
            }
        }
        history_range out = read(conn_.get(), j);
        if (!out.failed || conn_->err == 0) return out;
        spdlog::warn("backplane {} (replay): lost Redis while reading history: {}", describe_,
                     conn_->errstr);
        conn_.reset();
    }
    return {.entries = {}, .failed = true, .why = "Redis is not reachable"};
}

// The entry holding `from` is the last one at or before it (an entry holds one or more
// messages, and its ID is its first one's offset); then the following ones, oldest first,
// until the piece is full or an entry of another epoch (a recreated stream) ends it.
history_range redis_replay::read(redisContext* c, const job& j) {
    history_range out;
    auto fail = [&](const redisReply* r) {
        out.failed = true;
        out.why = r ? reply_text(r) : (c->err ? c->errstr : "no reply");
        return out;
    };
    const auto from = static_cast<unsigned long long>(j.from);
    auto r = command(c, "XREVRANGE %b 0-%llu - COUNT 1", key_.data(), key_.size(), from);
    if (!r || r->type != REDIS_REPLY_ARRAY) return fail(r.get());
    std::string start = "-";  // nothing at or before `from`: the oldest kept comes next
    std::size_t bytes = 0;
    if (r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2) {
        start = "(" + reply_text(r->element[0]->element[0]);
        message m;
        std::string epoch;
        if (parse(r->element[0], m, epoch) && epoch == j.epoch) {
            bytes += m.framed->size();
            out.entries.push_back(std::move(m));
        }
    }
    while (out.entries.size() < j.max_entries && bytes < j.max_bytes) {
        const std::size_t average = out.entries.empty() ? 0 : bytes / out.entries.size();
        std::size_t count = std::min(range_count, j.max_entries - out.entries.size());
        if (average > 0) count = std::clamp<std::size_t>((j.max_bytes - bytes) / average, 1, count);
        r = command(c, "XRANGE %b %s + COUNT %llu", key_.data(), key_.size(), start.c_str(),
                    static_cast<unsigned long long>(count));
        if (!r || r->type != REDIS_REPLY_ARRAY) return fail(r.get());
        for (std::size_t i = 0; i < r->elements; ++i) {
            message m;
            std::string epoch;
            if (!parse(r->element[i], m, epoch) || epoch != j.epoch) return out;
            start = "(0-" + std::to_string(m.offset);
            bytes += m.framed->size();
            out.entries.push_back(std::move(m));
        }
        if (r->elements < count) break;  // the stream's end
    }
    return out;
}

}  // namespace framecast::backplane
